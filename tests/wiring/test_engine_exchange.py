"""The engine backend's pure parts: candle lengths, and which candles count as closed."""

from __future__ import annotations

import pytest

from ctsd.errors import InvalidArgument
from ctsd.wiring.engine_exchange import timeframe_ms


@pytest.mark.parametrize(("timeframe", "ms"), [
    ("1s", 1_000), ("1m", 60_000), ("15m", 900_000), ("4h", 14_400_000), ("1d", 86_400_000),
    ("1w", 604_800_000),
])
def test_timeframes_have_their_length(timeframe: str, ms: int) -> None:
    assert timeframe_ms(timeframe) == ms


@pytest.mark.parametrize("timeframe", ["", "m", "0m", "1M", "1y", "01m", "1 m"])
def test_a_garbled_timeframe_is_refused(timeframe: str) -> None:
    with pytest.raises(InvalidArgument):
        timeframe_ms(timeframe)
