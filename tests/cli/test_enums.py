"""Enum words: the CLI's spelling of proto enums, both ways."""

from __future__ import annotations

import pytest

from cts.cli import enums
from cts.v1 import connection_pb2


def test_labels_drop_the_prefix_and_use_hyphens() -> None:
    assert enums.label(connection_pb2.ApiType, connection_pb2.API_TYPE_SPOT) == "spot"
    assert (
        enums.label(connection_pb2.ApiType, connection_pb2.API_TYPE_PERPETUAL_FUTURES)
        == "perpetual-futures"
    )
    assert enums.label(connection_pb2.PositionMode, connection_pb2.POSITION_MODE_ONE_WAY) == (
        "one-way"
    )


def test_unspecified_and_unknown_values_print_as_a_dash() -> None:
    assert enums.label(connection_pb2.ApiType, 0) == "-"
    assert enums.label(connection_pb2.ApiType, 99) == "-"


@pytest.mark.parametrize("word", ["perpetual-futures", "perpetual_futures", "PERPETUAL_FUTURES"])
def test_parse_accepts_hyphens_underscores_and_case(word: str) -> None:
    assert enums.parse(connection_pb2.ApiType, word) == connection_pb2.API_TYPE_PERPETUAL_FUTURES


def test_parse_refuses_unknown_words_and_unspecified() -> None:
    with pytest.raises(ValueError, match="choose from spot, margin"):
        enums.parse(connection_pb2.ApiType, "futures")
    with pytest.raises(ValueError):
        enums.parse(connection_pb2.ApiType, "unspecified")


def test_choices_leave_out_unspecified() -> None:
    assert enums.choices(connection_pb2.MarginMode) == ["cross", "isolated"]
