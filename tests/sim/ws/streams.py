"""What every simulated venue's WebSocket API must do with unmodified `ccxt.pro`.

Each `tests/sim/ws/test_<venue>.py` subclasses `StreamConformance` (as
`TestStreams`) and says how to build the venue's client and which symbols it
streams. The public tests run on a frozen clock and move it themselves, so what a
stream pushed at an instant is compared with what REST answers at that same
instant; the private tests place and fill orders over REST and find the same
orders and the same fills (trade ids included) on the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from ctsd.sim.clock import ManualClock
from ctsd.sim.market import Instrument
from ctsd.sim.server import SimulatorServer
from tests.sim.ws.conftest import (
    WAIT_S,
    ProFactory,
    ServerFactory,
    frozen_clock,
    ws_config,
)

Watch = Callable[[], Awaitable[Any]]


async def bounded(awaitable: Awaitable[Any]) -> Any:
    async with asyncio.timeout(WAIT_S):
        return await awaitable


async def until(watch: Watch, ready: Callable[[], bool]) -> None:
    """Call `watch` until `ready()` (checked first; bounded by `WAIT_S`)."""
    async with asyncio.timeout(WAIT_S):
        while not ready():
            await watch()


async def watch_until(watch: Watch, accept: Callable[[Any], bool]) -> Any:
    """Call `watch` until its result is accepted (bounded by `WAIT_S`)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            result = await watch()
            if accept(result):
                return result


def levels(side: Any, n: int) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(str(p)), Decimal(str(q))) for p, q, *_ in side[:n]]


class StreamConformance:
    exchange_class: ClassVar[Any]
    """The unmodified `ccxt.pro` class."""
    symbols: ClassVar[tuple[str, ...]] = ("BTC/USDT", "BTC/USDT:USDT")
    ticker_fields: ClassVar[tuple[str, ...]] = ("last", "bid", "ask", "high", "low",
                                                "baseVolume")
    """Fields a stream ticker shares with the REST ticker of the same instant."""
    book_limit: ClassVar[int | None] = None
    book_compare: ClassVar[int] = 20
    """Levels of the client's book compared with the simulator's."""

    def exchange(self, pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
        raise NotImplementedError

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "symbol" in metafunc.fixturenames:
            metafunc.parametrize("symbol", self.symbols,
                                 ids=["spot" if ":" not in s else "linear" for s in self.symbols])

    async def frozen(self, start: ServerFactory) -> tuple[SimulatorServer, ManualClock]:
        clock = frozen_clock()
        return await start(ws_config(), clock=clock), clock

    def public(self, pro: ProFactory, server: SimulatorServer) -> Any:
        """A client without keys: ccxt signs some market loading (Binance currencies) when
        it has keys, and the frozen clock would refuse the signature's time."""
        return self.exchange(pro, server, apiKey=None, secret=None)

    # --- public ----------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_ticker_is_the_rest_ticker_of_its_instant(
        self, start: ServerFactory, pro: ProFactory, symbol: str,
    ) -> None:
        server, clock = await self.frozen(start)
        ex = self.public(pro, server)
        for _ in range(2):
            price = float(server.sim.market.price(symbol))

            def at_price(ticker: Any, price: float = price) -> bool:
                return bool(ticker["last"] == price)

            streamed = await watch_until(lambda: ex.watch_ticker(symbol), at_price)
            fetched = await ex.fetch_ticker(symbol)
            for field in self.ticker_fields:
                assert streamed[field] == fetched[field], field
            clock.advance(7)

    @pytest.mark.asyncio
    async def test_candles_stream_and_close_as_rest_has_them(
        self, start: ServerFactory, pro: ProFactory, symbol: str,
    ) -> None:
        server, clock = await self.frozen(start)
        ex = self.public(pro, server)
        candles = await bounded(ex.watch_ohlcv(symbol, "1m"))
        assert candles[-1] == (await ex.fetch_ohlcv(symbol, "1m", limit=2))[-1]
        opened = candles[-1][0]
        clock.set_ms(opened + 60_000 + 1000)  # into the next minute
        later = await watch_until(lambda: ex.watch_ohlcv(symbol, "1m"),
                                  lambda c: c[-1][0] == opened + 60_000)
        rest = await ex.fetch_ohlcv(symbol, "1m", limit=3)
        closed = {c[0]: c for c in rest}[opened]
        assert ex.ohlcvs[symbol]["1m"][-2] == closed, (list(ex.ohlcvs[symbol]["1m"]), rest)
        assert later[-1] == rest[-1]

    @pytest.mark.asyncio
    async def test_trades_are_the_tape(
        self, start: ServerFactory, pro: ProFactory, symbol: str,
    ) -> None:
        server, clock = await self.frozen(start)
        ex = self.public(pro, server)
        market = server.sim.market
        inst = market.instrument(symbol)
        first = market.tape.last_id() + 1
        subscribed = asyncio.ensure_future(ex.watch_trades(symbol))
        await self.until_subscribed(server)
        clock.advance(16)  # three trades
        last = market.tape.last_id()
        await bounded(subscribed)
        await until(lambda: ex.watch_trades(symbol),
                    lambda: str(last) in {t["id"] for t in ex.trades[symbol]})
        tape = {str(t.id): t for t in market.tape.between(inst, first, last)}
        got = {t["id"]: t for t in ex.trades[symbol] if t["id"] in tape}
        assert set(got) == set(tape)
        for trade_id, trade in got.items():
            expected = tape[trade_id]
            assert (Decimal(str(trade["price"])), Decimal(str(trade["amount"]))) == (
                expected.price, self.trade_amount(inst, expected.qty))
            assert trade["side"] == ("buy" if expected.taker_buys else "sell")
            assert trade["timestamp"] == expected.time_ms

    def trade_amount(self, inst: Instrument, qty: Decimal) -> Decimal:
        """A tape quantity as ccxt reports it (OKX swaps count contracts)."""
        return qty

    async def until_subscribed(self, server: SimulatorServer) -> None:
        """Wait until the hub holds a topic (the subscribe request arrived)."""
        hub = server.streams
        await bounded(hub.until(lambda: bool(hub.topics)))

    @pytest.mark.asyncio
    async def test_order_book_is_the_simulators_book(
        self, start: ServerFactory, pro: ProFactory, symbol: str,
    ) -> None:
        server, clock = await self.frozen(start)
        ex = self.public(pro, server)
        market = server.sim.market
        inst = market.instrument(symbol)
        n = self.book_compare
        previous = None
        for _ in range(3):
            truth = market.books.snapshot(inst, n)
            want = (self.book_levels(inst, truth.bids), self.book_levels(inst, truth.asks))
            assert want != previous, "the test moves the clock until the book changes"

            def matches(book: Any, want: Any = want) -> bool:
                return bool((levels(book["bids"], n), levels(book["asks"], n)) == want)

            await watch_until(lambda: ex.watch_order_book(symbol, self.book_limit), matches)
            previous = want
            await self.move_book(clock, server, inst, n)

    @staticmethod
    async def move_book(clock: ManualClock, server: SimulatorServer, inst: Instrument,
                        n: int) -> None:
        """Move the clock, a second at a time, until the top `n` levels change."""
        books = server.sim.market.books
        before = books.snapshot(inst, n)
        for _ in range(60):
            clock.advance(1)
            after = books.snapshot(inst, n)
            if (after.bids, after.asks) != (before.bids, before.asks):
                return
        raise AssertionError("the book stood still for a minute")

    def book_levels(self, inst: Instrument, side: Any) -> list[tuple[Decimal, Decimal]]:
        return [(lv.price, lv.qty) for lv in side]
