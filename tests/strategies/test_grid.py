from __future__ import annotations

import random
from decimal import Decimal

from ctsd.strategies import model
from ctsd.strategies.base import resolve_params
from ctsd.strategies.grid import GRID, Grid
from tests.strategies.helpers import d, snapshot, symbol_market

SYMBOL = "BTC/USDT"
RICH = (model.Balance("USDT", d(100_000), d(100_000)),)


def grid(levels: int = 3) -> Grid:
    params = resolve_params(GRID, {"reference_price": "100", "spacing_pct": "1",
                                   "levels": levels, "amount": "1"})
    strategy = GRID.create(params)
    assert isinstance(strategy, Grid)
    return strategy


def test_buys_below_the_mid_nearest_first_and_no_sells_without_inventory() -> None:
    intents = grid().decide(snapshot(symbol_market(SYMBOL, [d("100.5")])),
                            model.Portfolio(balances=RICH))
    assert intents == tuple(
        model.OrderIntent(SYMBOL, model.Side.BUY, model.OrderType.LIMIT, d(1), d(price),
                          f"grid:BTC/USDT:{i}:buy")
        for i, price in (("-1", "99"), ("-2", "98"), ("-3", "97"))
    )


def test_sells_above_the_mid_only_what_is_held() -> None:
    portfolio = model.Portfolio(positions=(model.Position(SYMBOL, d("2.5"), d(99)),))
    intents = grid().decide(snapshot(symbol_market(SYMBOL, [d("100.5")])), portfolio)
    sells = [i for i in intents if isinstance(i, model.OrderIntent) and i.side is model.Side.SELL]
    assert [(s.price, s.tag) for s in sells] == [
        (d(101), "grid:BTC/USDT:+1:sell"), (d(102), "grid:BTC/USDT:+2:sell")]


def test_resting_levels_are_kept_and_wrong_side_orders_cancelled() -> None:
    kept = model.OpenOrder("a", SYMBOL, model.Side.BUY, model.OrderType.LIMIT, d(1), d(0), d(99),
                          "grid:BTC/USDT:-1:buy")
    stale = model.OpenOrder("b", SYMBOL, model.Side.BUY, model.OrderType.LIMIT, d(1), d(0), d(101),
                           "grid:BTC/USDT:+1:buy")
    foreign = model.OpenOrder("c", SYMBOL, model.Side.BUY, model.OrderType.LIMIT, d(1), d(0), d(50),
                              "manual")
    intents = grid(levels=1).decide(snapshot(symbol_market(SYMBOL, [d("100.5")])),
                                    model.Portfolio(open_orders=(kept, stale, foreign),
                                                    balances=RICH))
    assert intents == (model.CancelIntent("b", SYMBOL, "grid:BTC/USDT:+1:buy"),)


def test_buys_stop_when_the_free_quote_runs_out() -> None:
    poor = model.Portfolio(balances=(model.Balance("USDT", d(200), d(200)),))
    intents = grid().decide(snapshot(symbol_market(SYMBOL, [d("100.5")])), poor)
    assert [i.price for i in intents if isinstance(i, model.OrderIntent)] == [d(99), d(98)]


def test_the_cached_ladder_orders_levels_as_the_definition_does() -> None:
    """`Grid._wanted` walks a ladder computed once; on random grids and mid prices (on a
    level, between levels, beyond the ends, ladders reaching below zero) it must give
    what the definition gives: every level above zero but the mid, buys below and sells
    above, nearest first, the lower one first on equal distance."""
    rng = random.Random(7)
    for _ in range(3000):
        grid = Grid(Decimal(rng.choice(["10", "100.5", "0.001", "7"])),
                    Decimal(rng.choice(["0.02", "1", "5", "33"])), rng.randint(1, 30),
                    Decimal(1))
        step = grid.reference_price * grid.spacing_pct / 100
        offset = rng.choice([rng.randint(-35, 35), round(rng.uniform(-35, 35), 2)])
        mid = grid.reference_price + step * Decimal(str(offset))
        defined = []
        for i in (*range(-grid.levels, 0), *range(1, grid.levels + 1)):
            price = grid.reference_price + step * i
            if price > 0 and price != mid:
                side = model.Side.BUY if price < mid else model.Side.SELL
                defined.append((f"grid:X/Y:{i:+d}:{side.value}", side, price))
        defined.sort(key=lambda level: abs(level[2] - mid))
        assert [(w.tag, w.side, w.price) for w in grid._wanted("X/Y", mid)] == defined
