"""The market's book and tape, and matching against them: one number for one moment.

Every view of the market (tape, candles, ticker, book, fills) is derived from the
seeded path; these tests pin that they agree, that the book's sequence only grows,
and that resting orders and triggers see every trade between two looks.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from decimal import Decimal

import pytest

from ctsd.sim.accounts import (
    Account,
    Fill,
    OrderStatus,
    OrderType,
    Rejection,
    RejectKind,
    Side,
    Trigger,
)
from ctsd.sim.book import Level, diff
from ctsd.sim.clock import ManualClock
from ctsd.sim.events import OrderUpdate
from ctsd.sim.market import TIMEFRAMES, Market, MarketCatalog
from ctsd.sim.matching import OrderRequest
from ctsd.sim.path import TRADE_INTERVAL_MS
from ctsd.sim.state import Simulator
from tests.sim.conftest import API_KEY, FEES, T0, sim_config

BASE_FEES = replace(FEES, base_fee_on_buy=True)


def _market(clock: ManualClock | None = None) -> Market:
    return Market(MarketCatalog(3, 30), clock or ManualClock(T0))


def _sim(clock: ManualClock) -> tuple[Simulator, Account]:
    sim = Simulator(sim_config(), clock)
    account = sim.accounts.get(API_KEY)
    assert account is not None
    return sim, account


# --- tape -------------------------------------------------------------------------------


def test_tape_ids_are_contiguous_and_the_last_trade_is_the_price() -> None:
    clock = ManualClock(T0 + 2_345)
    market = _market(clock)
    inst = market.instrument("ETH/USDT")
    trades = market.tape.recent(inst, 50)
    assert [t.id for t in trades] == list(range(trades[0].id, trades[0].id + 50))
    assert all(b.time_ms - a.time_ms == TRADE_INTERVAL_MS for a, b in itertools.pairwise(trades))
    assert trades[-1].time_ms <= clock.now_ms() < trades[-1].time_ms + TRADE_INTERVAL_MS
    assert trades[-1].price == market.price("ETH/USDT")
    assert all(market.price("ETH/USDT", t.time_ms) == t.price for t in trades)
    assert all(t.qty > 0 for t in trades) and {t.taker_buys for t in trades} == {True, False}


@pytest.mark.parametrize("timeframe", ["1m", "5m", "15m"])
def test_short_candles_are_the_tape_resampled(timeframe: str) -> None:
    """What Freqtrade does with Kraken's trades gives the candles the kline endpoints serve."""
    clock = ManualClock(T0 + 123_456)
    market = _market(clock)
    inst = market.instrument("SOL/USDT")
    tf = TIMEFRAMES[timeframe]
    candles = market.candles("SOL/USDT", tf, limit=30)
    tape = market.tape
    trades = tape.between(inst, tape.first_id_from(candles[0].open_ms), tape.last_id())
    for candle in candles:
        inside = [t for t in trades if candle.open_ms <= t.time_ms <= candle.close_ms]
        prices = [t.price for t in inside]
        assert (candle.open, candle.high, candle.low, candle.close) == (
            prices[0], max(prices), min(prices), prices[-1])
        assert candle.volume == sum(t.qty for t in inside)
        assert candle.quote_volume == sum(t.qty * t.price for t in inside)
        assert candle.trades == len(inside)


def test_advance_walks_the_tape_forward() -> None:
    market = _market()
    before = market.tape.last_id()
    market.advance(60)
    assert market.tape.last_id() == before + 60_000 // TRADE_INTERVAL_MS
    trade = market.tape.recent(market.instrument("BTC/USDT"), 1)[0]
    assert trade.time_ms <= market.now_ms()  # server time, behind the path


# --- book -------------------------------------------------------------------------------


def test_book_top_is_the_ticker_and_the_last_price() -> None:
    market = _market()
    inst = market.instrument("BTC/USDT")
    book = market.books.snapshot(inst, 100)
    ticker = market.ticker("BTC/USDT")
    assert book.bids[0] == Level(ticker.bid, ticker.bid_qty)
    assert book.asks[0] == Level(ticker.ask, ticker.ask_qty)
    assert ticker.bid == market.price("BTC/USDT") == ticker.last
    assert ticker.ask == ticker.bid + inst.tick_size
    assert len(book.bids) == len(book.asks) == 100
    assert all(a.price > b.price for a, b in itertools.pairwise(book.bids))
    assert all(a.price < b.price for a, b in itertools.pairwise(book.asks))
    assert all(level.qty >= inst.step_size for level in book.bids + book.asks)


def test_book_sequence_only_grows_and_pins_the_book() -> None:
    clock = ManualClock(T0)
    market = _market(clock)
    inst = market.instrument("ETH/USDT")
    first = market.books.snapshot(inst, 50)
    assert market.books.snapshot(inst, 50) == first  # same sequence, same book
    sequences = [first.sequence]
    clock.advance(1)
    sequences.append(market.sequence())
    market.set_price("ETH/USDT", Decimal(3000))
    sequences.append(market.sequence())
    market.advance(30)
    sequences.append(market.sequence())
    market.reset()
    sequences.append(market.sequence())
    clock.advance(0.2)
    sequences.append(market.sequence())
    assert sequences[:-1] == sorted(set(sequences[:-1]))  # strictly growing
    assert sequences[-1] == sequences[-2]  # within one second nothing changes


def test_a_diff_turns_the_old_book_into_the_new() -> None:
    clock = ManualClock(T0)
    market = _market(clock)
    inst = market.instrument("BTC/USDT")
    old = market.books.snapshot(inst, 200)
    clock.advance(17)
    new = market.books.snapshot(inst, 200)
    bids, asks = diff(old, new)
    assert bids or asks
    for side_old, side_new, changes, best_first in (
            (old.bids, new.bids, bids, True), (old.asks, new.asks, asks, False)):
        book = {level.price: level.qty for level in side_old}
        for level in changes:
            if level.qty:
                book[level.price] = level.qty
            else:
                book.pop(level.price, None)
        ordered = sorted(book.items(), reverse=best_first)[:len(side_new)]
        assert [Level(p, q) for p, q in ordered] == list(side_new)


# --- matching on the book and tape ------------------------------------------------------


def _between_now_and_the_days_low(market: Market, symbol: str) -> Decimal:
    """A price under the current one that the next day's tape does reach."""
    inst = market.instrument(symbol)
    tape = market.tape
    day = tape.bar(inst, tape.last_id() + 1, tape.last_id() + 17_280)
    assert day is not None and day.low < market.price_ticks(inst) - 2
    return (day.low + market.price_ticks(inst)) // 2 * inst.tick_size


def _dip(market: Market, symbol: str, below: Decimal) -> int:
    """Seconds from now until a trade prints below `below` (within a day)."""
    inst = market.instrument(symbol)
    tape = market.tape
    hit = tape.first_through(inst, tape.last_id(), tape.last_id() + 17_280,
                             at_or_below=int(below / inst.tick_size) - 1)
    assert hit is not None
    return (hit.time_ms - market.now_ms()) // 1000 + 1


def test_a_resting_buy_fills_on_a_dip_between_two_looks() -> None:
    clock = ManualClock(T0)
    sim, account = _sim(clock)
    limit = _between_now_and_the_days_low(sim.market, "ETH/USDT")
    order = sim.place_order(account, OrderRequest("ETH/USDT", Side.BUY, OrderType.LIMIT,
                                                  Decimal(1), limit), FEES)
    wait = _dip(sim.market, "ETH/USDT", limit)
    clock.advance(wait + 3600)  # long after the dip, whatever the price is now
    sim.touch(account)
    assert order.status is OrderStatus.FILLED and order.average == limit
    (fill,) = account.fills_of(order.id)
    assert (fill.maker, fill.price, fill.qty, fill.fee_asset) == (True, limit, Decimal(1), "USDT")
    assert order.created_ms < fill.time_ms <= T0 + wait * 1000


def test_a_stop_fires_on_the_path_and_fills_at_the_bid_of_that_trade() -> None:
    clock = ManualClock(T0)
    sim, account = _sim(clock)
    stop = _between_now_and_the_days_low(sim.market, "ETH/USDT")
    order = sim.place_order(account, OrderRequest(
        "ETH/USDT", Side.SELL, OrderType.MARKET, Decimal(2), trigger=Trigger(stop, rises=False)),
        FEES)
    assert order.untriggered and account.spot["ETH"].locked == 2
    clock.advance(_dip(sim.market, "ETH/USDT", stop + Decimal("0.01")) + 600)
    sim.touch(account)
    (fill,) = account.fills_of(order.id)
    assert order.status is OrderStatus.FILLED and not fill.maker
    assert fill.price <= stop and fill.time_ms == order.triggered_ms
    assert sim.market.price("ETH/USDT", fill.time_ms) == fill.price


def test_a_trigger_already_reached_is_refused_or_fires_at_once() -> None:
    sim, account = _sim(ManualClock(T0))
    price = sim.market.price("ETH/USDT")
    above = Trigger(price - Decimal("1"), rises=True)
    request = OrderRequest("ETH/USDT", Side.BUY, OrderType.MARKET, Decimal(1), trigger=above)
    with pytest.raises(Rejection) as refused:
        sim.place_order(account, request, FEES)
    assert refused.value.kind is RejectKind.WOULD_TRIGGER
    fired = sim.place_order(account, OrderRequest(
        "ETH/USDT", Side.BUY, OrderType.MARKET, Decimal(1), trigger=above, trigger_now=True),
        FEES)
    assert fired.status is OrderStatus.FILLED and fired.average == price + Decimal("0.01")


def test_spot_buy_fees_in_the_base_asset_where_the_venue_charges_them_so() -> None:
    sim, account = _sim(ManualClock(T0))
    seen: list[Fill] = []
    sim.events.subscribe(account.api_key, lambda event: seen.append(event.fill) if isinstance(
        event, OrderUpdate) and event.fill is not None else None)
    eth, usdt = account.spot["ETH"].free, account.spot["USDT"].free
    buy = sim.place_order(account, OrderRequest("ETH/USDT", Side.BUY, OrderType.MARKET,
                                                Decimal(1)), BASE_FEES)
    assert (buy.fee, buy.fee_asset) == (Decimal("0.002"), "ETH")
    assert account.spot["ETH"].free == eth + 1 - Decimal("0.002")
    assert account.spot["USDT"].free == usdt - buy.cost and account.spot["USDT"].locked == 0
    sell = sim.place_order(account, OrderRequest("ETH/USDT", Side.SELL, OrderType.MARKET,
                                                 Decimal(1)), BASE_FEES)
    assert sell.fee_asset == "USDT" and sell.fee == sell.cost * Decimal("0.002")
    assert [f.order_id for f in seen] == [buy.id, sell.id]
    assert seen == account.fills and seen[0].trade_id < seen[1].trade_id
