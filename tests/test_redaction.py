"""The one redaction step: every known credential in every spelling, and the value after
every credential header or field name, out of messages, fields and tracebacks alike."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest

from ctsd import logs
from ctsd.redaction import REDACTED, KnownSecrets, key_hint

KEY = "AKIAPUBLICKEY0000ab12"
SECRET = "sEcReT/with+odd=chars&more"
PASSPHRASE = "pass phrase NEVER"


def spellings(value: str) -> list[str]:
    """Written out here, not taken from the module under test."""
    raw = value.encode()
    b64 = base64.b64encode(raw).decode()
    url64 = base64.urlsafe_b64encode(raw).decode()
    return [value, b64, b64.rstrip("="), url64, url64.rstrip("="), raw.hex(), raw.hex().upper(),
            quote(value, safe=""), quote_plus(value)]


@pytest.fixture
def known() -> KnownSecrets:
    secrets = KnownSecrets()
    secrets.remember("c1", "api_key", KEY, is_key=True)
    secrets.remember("c1", "api_secret", SECRET, is_key=False)
    secrets.remember("c1", "passphrase", PASSPHRASE, is_key=False)
    return secrets


@pytest.fixture
def out(known: KnownSecrets) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    logs.configure("debug", "json", stream)
    root.handlers[0].filters[:] = [logs.RedactingFilter(known)]
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


@pytest.mark.parametrize("value", [KEY, SECRET, PASSPHRASE])
def test_every_spelling_of_a_known_value_is_redacted(known: KnownSecrets, value: str) -> None:
    for spelled in spellings(value):
        text = known.redact(f"before {spelled} after")
        assert spelled not in text, spelled
        shown = key_hint(KEY) if value == KEY else REDACTED
        assert text == f"before {shown} after"


def test_credential_headers_are_redacted_even_for_unknown_values() -> None:
    line = ("GET https://x/api?symbol=BTC&signature=abcdef0123456789 {'X-MBX-APIKEY': "
            "'UNKNOWNKEY123456789', 'OK-ACCESS-PASSPHRASE': 'notknown pass', "
            "'API-Sign': 'c2lnbmF0dXJl==', \"authorization\": \"Bearer tok\"}")
    text = KnownSecrets().redact(line)
    for leaked in ("abcdef0123456789", "UNKNOWNKEY123456789", "notknown", "c2lnbmF0dXJl",
                   "Bearer tok"):
        assert leaked not in text, text
    assert "'X-MBX-APIKEY': '****6789'" in text and "symbol=BTC" in text


def test_a_forgotten_connection_is_no_longer_searched_for(known: KnownSecrets) -> None:
    known.forget("c1")
    assert known.redact(f"x {SECRET} y") == f"x {SECRET} y"


def test_a_ccxt_debug_line_a_field_and_a_traceback_carry_no_credential(
        out: io.StringIO) -> None:
    ccxt = logging.getLogger("ccxt.base.exchange")
    logs.set_level("debug", ccxt_debug=True)
    ccxt.debug("%s %s, Request: %s %s", "POST", "https://okx/api/v5/trade/order",
               {"OK-ACCESS-KEY": KEY, "OK-ACCESS-PASSPHRASE": PASSPHRASE}, f"body={SECRET}")
    log = logging.getLogger("ctsd.test")
    log.warning("refused", extra={"detail": {"echo": [quote_plus(SECRET)]}, "n": 3})
    try:
        raise RuntimeError(f"venue said: key {KEY} secret {base64.b64encode(SECRET.encode())!r}")
    except RuntimeError:
        log.exception("failed")
    text = out.getvalue()
    for value in (KEY, SECRET, PASSPHRASE):
        for spelled in spellings(value):
            assert spelled not in text, spelled
    logs.set_level("info")
    # This test's own lines: at debug level another test's thread left in this worker
    # (a simulator's) may log between them.
    lines = [line for line in map(json.loads, text.splitlines())
             if line["logger"] in ("ccxt.base.exchange", "ctsd.test")]
    assert key_hint(KEY) in lines[0]["msg"] and lines[1]["n"] == 3
    assert lines[1]["detail"] == {"echo": [REDACTED]} and "RuntimeError" in lines[2]["error"]


def test_ccxt_stays_at_info_unless_asked(out: io.StringIO) -> None:
    logs.set_level("debug")
    assert logging.getLogger("ccxt").getEffectiveLevel() == logging.INFO
    logs.set_level("debug", ccxt_debug=True)
    assert logging.getLogger("ccxt").getEffectiveLevel() == logging.DEBUG
    logs.set_level("info")


def test_a_key_glued_to_the_digits_before_it_is_found(known: KnownSecrets) -> None:
    """Bybit echoes its signing string: timestamp, key and window with nothing between."""
    text = known.redact(f'"retMsg":"error sign! origin_string[1796584986830{KEY}5000]"')
    assert KEY not in text and f"1796584986830{key_hint(KEY)}5000" in text
