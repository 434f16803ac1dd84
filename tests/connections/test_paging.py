"""ListConnections page sizes and tokens: opaque, bound to their filter, refused when forged."""

from __future__ import annotations

import base64
import json

import pytest

from ctsd.connections.paging import MAX_TOKEN_LENGTH, decode_token, encode_token, page_size
from ctsd.errors import InvalidArgument


def test_page_tokens_round_trip_and_bind_to_the_filter() -> None:
    token = encode_token(42, "enabled = true")
    assert decode_token(token, "enabled = true") == 42
    assert decode_token("", "anything") == 0
    with pytest.raises(InvalidArgument, match="different filter"):
        decode_token(token, "")


def test_page_size_defaults_and_caps() -> None:
    assert page_size(0) == 50
    assert page_size(5000) == 1000
    with pytest.raises(InvalidArgument):
        page_size(-3)


@pytest.mark.parametrize("token", [
    "not-a-token", "x" * (MAX_TOKEN_LENGTH + 1),
    base64.urlsafe_b64encode(b"[1, 2]").decode(),
    base64.urlsafe_b64encode(json.dumps({"a": -1, "f": "x"}).encode()).decode(),
    base64.urlsafe_b64encode(json.dumps({"a": True, "f": "x"}).encode()).decode(),
])
def test_a_token_this_server_did_not_issue_names_page_token(token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_token(token, "")
    assert [v.field for v in caught.value.violations] == ["page_token"]
