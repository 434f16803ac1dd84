from __future__ import annotations

import random
from dataclasses import replace
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


def test_where_a_buy_pays_its_fee_in_base_a_sell_level_sells_what_one_buy_left() -> None:
    """A filled buy of 1 at a 0.1 % fee taken in the base leaves 0.999 held: that is what
    the sell level above sells (asking for 1 never sold anything); two buys' worth, two
    levels; less than one more (dust of earlier sells rounded to the lot) goes with the
    last; and where the fee is paid in the quote, a level still sells the whole amount."""
    base_fee = replace(symbol_market(SYMBOL, [d("100.5")]), info=replace(
        symbol_market(SYMBOL, [d("100.5")]).info, buy_fee_in_base=True))

    def sells(market: model.SymbolMarket, held: str) -> list[tuple[Decimal, Decimal | None]]:
        portfolio = model.Portfolio(positions=(model.Position(SYMBOL, d(held), d(99)),))
        return [(i.amount, i.price) for i in grid().decide(snapshot(market), portfolio)
                if isinstance(i, model.OrderIntent) and i.side is model.Side.SELL]

    assert sells(base_fee, "0.999") == [(d("0.999"), d(101))]
    assert sells(base_fee, "1.998") == [(d("0.999"), d(101)), (d("0.999"), d(102))]
    assert sells(base_fee, "0.998") == []  # less than one buy left: not a level's worth
    # What earlier sells' lot-size rounding left goes with the last level placed:
    assert sells(base_fee, "1.0") == [(d("1.0"), d(101))]
    assert sells(base_fee, "2.0") == [(d("0.999"), d(101)), (d("1.001"), d(102))]
    assert sells(symbol_market(SYMBOL, [d("100.5")]), "0.999") == []
    assert sells(symbol_market(SYMBOL, [d("100.5")]), "1") == [(d(1), d(101))]


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
