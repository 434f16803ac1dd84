"""A Freqtrade strategy for `make interop`: enter at once, leave at once, again and again.

Every loop enters when no trade is open (an entry signal on every candle) and the next
loop leaves through `minimal_roi` (-100 %: any result is enough), so a minute of
trading runs entries, exits and, where the venue supports it, stop-loss orders on the
exchange several times over. It trades nothing of interest: it exercises the venue.
"""

from __future__ import annotations

from freqtrade.strategy import IStrategy
from pandas import DataFrame


class SimChurn(IStrategy):
    INTERFACE_VERSION = 3
    timeframe = "1m"
    minimal_roi = {"0": -1}  # noqa: RUF012 (Freqtrade reads it from the class)
    stoploss = -0.05
    process_only_new_candles = False
    startup_candle_count = 0
    can_short = False

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["enter_long"] = 1
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["exit_long"] = 0
        return dataframe
