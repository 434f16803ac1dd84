"""`grid`: keep one limit order on each level of a fixed price grid.

Levels sit at `reference_price * (1 + i * spacing_pct / 100)` for i in
±1..±levels. Levels below the mid price hold buys, levels above hold sells (only
of inventory already held: spot, never short). Where a buy pays its fee in the
base asset (`MarketInfo.buy_fee_in_base`: Binance, Bybit, OKX spot), a filled buy
leaves a little less than `amount` held, so a sell level sells what one buy
leaves (`amount` less the higher fee rate): asking for the whole `amount` never
sold what the grid bought. What is held beyond whole levels' worths (less than one
more: what lot-size rounding of earlier sells left, at every round trip) goes with
the last sell level placed, so it cannot pile up into a level no order sells. The
strategy keeps no state: each cycle it derives
the wanted order per level from the tags of the resting orders, places what is
missing and cancels what is on the wrong side, so a filled buy is simply
replaced next cycle and a restart changes nothing.

Its decision depends on the market only through which levels lie below the mid
price and which above, so `quiet_bands` tells the engine that a mid moving
between the two nearest levels cannot change it (on a WebSocket connection such
moves then wake no cycle).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from ctsd.errors import FieldViolation
from ctsd.strategies import model
from ctsd.strategies.base import DataNeeds, PriceBand, PriceField, Strategy
from ctsd.strategies.params import ParamKind, ParamSchema, ParamSpec, StrategyParams

TAG_PREFIX = "grid:"

_SCHEMA = ParamSchema((
    ParamSpec("reference_price", ParamKind.DECIMAL, "centre of the grid", None,
              Decimal("0.00000001")),
    ParamSpec("spacing_pct", ParamKind.DECIMAL, "distance between levels, percent of reference",
              Decimal(1), Decimal("0.01"), Decimal(50)),
    ParamSpec("levels", ParamKind.INT, "levels on each side of the reference", 5,
              Decimal(1), Decimal(100)),
    ParamSpec("amount", ParamKind.DECIMAL, "base amount per level", None, Decimal("0.00000001")),
))


@lru_cache(maxsize=4096)
def _ladder(symbol: str, reference: Decimal, spacing_pct: Decimal, levels: int,
            ) -> tuple[tuple[Decimal, ...], tuple[tuple[str, str], ...]]:
    """The level prices above zero, lowest first, and each one's (buy, sell) tag."""
    step = reference * spacing_pct / 100
    ladder = [(reference + step * i, i) for i in (*range(-levels, 0), *range(1, levels + 1))]
    kept = [(price, i) for price, i in ladder if price > 0]
    return (tuple(price for price, _ in kept),
            tuple((f"{TAG_PREFIX}{symbol}:{i:+d}:{model.Side.BUY.value}",
                   f"{TAG_PREFIX}{symbol}:{i:+d}:{model.Side.SELL.value}") for _, i in kept))


@dataclass(frozen=True, slots=True)
class _Level:
    tag: str
    side: model.Side
    price: Decimal


@dataclass(frozen=True, slots=True)
class Grid:
    reference_price: Decimal
    spacing_pct: Decimal
    levels: int
    amount: Decimal

    @property
    def needs(self) -> DataNeeds:
        return DataNeeds(candles=0)

    def decide(self, market: model.MarketSnapshot,
               portfolio: model.Portfolio) -> tuple[model.Intent, ...]:
        intents: list[model.Intent] = []
        for symbol_market in market.symbols:
            intents.extend(self._decide_symbol(symbol_market, portfolio))
        return tuple(intents)

    def quiet_bands(self, market: model.MarketSnapshot, portfolio: model.Portfolio,
                    ) -> Mapping[str, PriceBand]:
        """Per symbol, the mid prices strictly between the levels nearest below and above
        the mid (a mid on a level: none, its side changes with any move)."""
        step = self.reference_price * self.spacing_pct / 100
        prices = [price for price in (self.reference_price + step * i for i in (
            *range(-self.levels, 0), *range(1, self.levels + 1))) if price > 0]
        bands = {}
        for symbol_market in market.symbols:
            mid = symbol_market.ticker.mid
            lo = max((p for p in prices if p <= mid), default=None)
            hi = min((p for p in prices if p >= mid), default=None)
            bands[symbol_market.info.symbol] = PriceBand(PriceField.MID, lo, hi)
        return bands

    def _wanted(self, symbol: str, mid: Decimal) -> list[_Level]:
        """Every level with the side it should hold, nearest to the mid price first (on
        equal distance the lower one). The ladder is computed once per grid and symbol:
        this runs on every market event, between the event and the order."""
        prices, tags = _ladder(symbol, self.reference_price, self.spacing_pct, self.levels)
        split = bisect_left(prices, mid)
        below = [_Level(tags[i][0], model.Side.BUY, prices[i]) for i in range(split - 1, -1, -1)]
        above = [_Level(tags[i][1], model.Side.SELL, prices[i]) for i in range(split, len(prices))
                 if prices[i] != mid]
        levels: list[_Level] = []
        b = a = 0
        while b < len(below) or a < len(above):
            if a == len(above) or (b < len(below) and
                                   mid - below[b].price <= above[a].price - mid):
                levels.append(below[b])
                b += 1
            else:
                levels.append(above[a])
                a += 1
        return levels

    def _decide_symbol(self, market: model.SymbolMarket,
                       portfolio: model.Portfolio) -> list[model.Intent]:
        symbol = market.info.symbol
        wanted = self._wanted(symbol, market.ticker.mid)
        wanted_tags = {level.tag for level in wanted}
        ours = [o for o in portfolio.orders_for(symbol) if o.tag.startswith(TAG_PREFIX)]
        intents: list[model.Intent] = [
            model.CancelIntent(o.client_order_id, symbol, o.tag)
            for o in ours if o.tag not in wanted_tags
        ]
        kept = {o.tag for o in ours if o.tag in wanted_tags}
        committed = sum((o.remaining for o in ours if o.tag in kept and o.side is model.Side.SELL),
                        Decimal(0))
        inventory = portfolio.position(symbol).amount - committed
        budget = portfolio.free(market.info.quote)
        sell = self._sell_amount(market.info)
        for level in wanted:
            if level.tag in kept:
                continue
            amount = self.amount
            if level.side is model.Side.SELL:
                if inventory < sell:
                    continue
                amount = sell if inventory >= 2 * sell else inventory
                inventory -= amount
            else:
                cost = self.amount * level.price
                if budget < cost:
                    continue
                budget -= cost
            intents.append(model.OrderIntent(symbol, level.side, model.OrderType.LIMIT, amount,
                                             level.price, level.tag))
        return intents

    def _sell_amount(self, info: model.MarketInfo) -> Decimal:
        """What a sell level sells: `amount`, less the fee a buy of it pays in the base
        asset where the venue takes it so (the higher rate: the buy may have taken)."""
        if not info.buy_fee_in_base:
            return self.amount
        return self.amount * (1 - max(info.taker_fee, info.maker_fee))


@dataclass(frozen=True, slots=True)
class GridFactory:
    name: str = "grid"
    description: str = "limit orders on evenly spaced levels around a reference price"
    schema: ParamSchema = _SCHEMA

    def check(self, params: StrategyParams, prefix: str) -> list[FieldViolation]:
        if params.decimal("spacing_pct") * params.integer("levels") >= 100:
            return [FieldViolation(f"{prefix}.levels",
                                   "levels * spacing_pct must stay below 100 (no level at 0)")]
        return []

    def create(self, params: StrategyParams) -> Strategy:
        return Grid(params.decimal("reference_price"), params.decimal("spacing_pct"),
                    params.integer("levels"), params.decimal("amount"))


GRID = GridFactory()
"""The entry point target: an immutable factory, not a mutable registry entry."""
