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
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from ctsd.sim import derivatives
from ctsd.sim.clock import ManualClock
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.funding import FUNDING_INTERVAL_MS
from ctsd.sim.market import Instrument
from ctsd.sim.positions import LedgerKind
from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import SimulatorConfig
from tests.sim.conftest import API_KEY
from tests.sim.ws.conftest import (
    WAIT_S,
    ProFactory,
    RawClient,
    ServerFactory,
    start_frozen,
    ws_config,
)

Watch = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Refusal:
    client: dict[str, Any]
    symbol: str
    error: type[Exception]
    match: str
    """Matched against the message of `error` — or of its context, with `chained`."""
    chained: type[Exception] | None = None
    """Where ccxt raises another exception while handling the venue's error."""


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


async def lose_next_book_update(server: SimulatorServer, clock: ManualClock,
                                inst: Instrument, depth: int) -> None:
    """Inject a sequence gap and move the book once: that update is lost."""
    hub, faults = server.streams, server.sim.faults

    def lost() -> int:
        return sum(c.lost for c in hub.connections)

    before = lost()
    server.sim.add_fault(FaultSpec(FaultKind.WS_GAP))
    await bounded(hub.until(lambda: not faults.pending()))
    await StreamConformance.move_book(clock, server, inst, depth)
    await bounded(hub.until(lambda: lost() > before))


async def expect_cut(client: RawClient, server: SimulatorServer, venue: str, kind: str,
                     code: int, reason: str) -> None:
    """The server closes `client` with `code`/`reason`, counting one `ws_<kind>`."""
    closing = await client.closed()
    assert (closing.data, closing.extra) == (code, reason)
    assert server.sim.stats.by_kind[(venue, f"ws_{kind}")] == 1


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
        if "refusal" in metafunc.fixturenames:
            metafunc.parametrize("refusal", list(self.refusals), ids=list(self.refusals))
        if "symbol" in metafunc.fixturenames:
            metafunc.parametrize("symbol", self.symbols,
                                 ids=["spot" if ":" not in s else "linear" for s in self.symbols])

    def config(self, **ws: Any) -> SimulatorConfig:
        """The simulator's config for this venue (`ws` overrides `WsConfig` fields)."""
        return ws_config(**ws)

    async def frozen_public(
        self, start: ServerFactory, pro: ProFactory,
    ) -> tuple[SimulatorServer, ManualClock, Any]:
        """A simulator on a frozen clock and a client of it without keys: ccxt signs some
        market loading (Binance currencies) when it has keys, and the frozen clock would
        refuse the signature's time."""
        server, clock = await start_frozen(start, self.config())
        return server, clock, self.exchange(pro, server, apiKey=None, secret=None)

    # --- public ----------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_ticker_is_the_rest_ticker_of_its_instant(
        self, start: ServerFactory, pro: ProFactory, symbol: str,
    ) -> None:
        server, clock, ex = await self.frozen_public(start, pro)
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
        _, clock, ex = await self.frozen_public(start, pro)
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
        server, clock, ex = await self.frozen_public(start, pro)
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
        server, clock, ex = await self.frozen_public(start, pro)
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

    # --- private ---------------------------------------------------------------------

    refusals: ClassVar[dict[str, Refusal]]
    """Login failures by case: the client's overrides, the symbol it watches, what ccxt
    raises and a pattern of the venue's error in its message."""

    @pytest.mark.asyncio
    async def test_a_refused_login_raises_what_production_raises(
        self, start: ServerFactory, pro: ProFactory, refusal: str,
    ) -> None:
        case = self.refusals[refusal]
        server = await start(self.config())
        ex = self.private(pro, server)
        await self.prepare(ex)  # what ccxt loads over REST with good keys
        for name, value in case.client.items():
            setattr(ex, name, value)
        with pytest.raises(case.error) as raised:
            await bounded(ex.watch_orders(case.symbol))
        cause: BaseException | None = raised.value
        if case.chained is not None:
            cause = raised.value.__context__
            assert isinstance(cause, case.chained), repr(cause)
        assert re.search(case.match, str(cause)), str(cause)

    private_channels: ClassVar[dict[str, str]]
    """The channel ccxt's `orders`, `trades` and `balance` watchers subscribe."""
    trade_amount_of: ClassVar[float] = 0.01

    async def prepare(self, ex: Any) -> None:
        """Load what the client loads over REST before it logs in on a WebSocket."""
        await ex.load_markets()

    def private(self, pro: ProFactory, server: SimulatorServer) -> Any:
        """A signed client (the server runs on the wall clock ccxt signs with)."""
        return self.exchange(pro, server)

    async def until_private(self, server: SimulatorServer, *watchers: str) -> None:
        """Wait until the channels of `watchers` (`orders`, `trades`, `balance`) are on."""
        hub = server.streams
        wanted = {self.private_channels[w] for w in watchers}

        def ready() -> bool:
            joined = set().union(*(s.channels for s in hub.connections.values()))
            return wanted <= joined

        await bounded(hub.until(ready))

    @pytest.mark.asyncio
    async def test_a_rest_fill_is_the_same_fill_on_the_stream(
        self, start: ServerFactory, pro: ProFactory, symbol: str,
    ) -> None:
        server = await start(self.config())
        ex = self.private(pro, server)
        await ex.load_markets()
        orders = asyncio.ensure_future(ex.watch_orders(symbol))
        trades = asyncio.ensure_future(ex.watch_my_trades(symbol))
        balance = asyncio.ensure_future(ex.watch_balance(self.balance_params(symbol)))
        await self.until_private(server, "orders", "trades", "balance")
        placed = await ex.create_order(symbol, "market", "buy", self.trade_amount_of)
        account = server.sim.accounts.get(API_KEY)
        assert account is not None
        fill = account.fills[-1]
        assert placed["id"] == self.order_id(fill.order_id)

        await bounded(orders)
        await until(lambda: ex.watch_orders(symbol), lambda: any(
            o["id"] == placed["id"] and o["status"] == "closed" for o in ex.orders))
        await bounded(trades)
        trade_id = self.trade_id(fill.trade_id)
        await until(lambda: ex.watch_my_trades(symbol),
                    lambda: trade_id in {t["id"] for t in ex.myTrades})
        streamed = next(t for t in ex.myTrades if t["id"] == trade_id)
        assert streamed["order"] == placed["id"]
        assert Decimal(str(streamed["price"])) == fill.price
        rest = {t["id"]: t for t in await ex.fetch_my_trades(symbol)}
        assert rest[trade_id]["order"] == placed["id"]
        assert rest[trade_id]["price"] == streamed["price"]

        quote = ex.market(symbol)["settle"] or ex.market(symbol)["quote"]
        fetched = (await ex.fetch_balance(self.balance_params(symbol)))[quote]["total"]
        await bounded(balance)
        await until(lambda: ex.watch_balance(self.balance_params(symbol)),
                    lambda: self.streamed_balance(
            ex, symbol).get(quote, {}).get("total") == pytest.approx(fetched))

    @pytest.mark.asyncio
    async def test_an_order_filled_in_parts_is_each_trade_with_its_fee_on_rest_and_stream(
        self, start: ServerFactory, pro: ProFactory, symbol: str,
    ) -> None:
        """With `/admin/fills` splitting fills in three, a market order is three trades:
        each streamed with its own id and fee, listed the same in the REST own-fill
        history, their fees adding up to what the venue charged the order."""
        server = await start(self.config())
        server.sim.fill_split = 3
        ex = self.private(pro, server)
        await ex.load_markets()
        trades = asyncio.ensure_future(ex.watch_my_trades(symbol))
        await self.until_private(server, "trades")
        placed = await ex.create_order(symbol, "market", "buy", self.split_amount(symbol))
        account = server.sim.accounts.get(API_KEY)
        assert account is not None
        order = account.orders[max(account.orders)]
        fills = account.fills_of(order.id)
        assert len(fills) == 3 and sum(f.fee for f in fills) == order.fee > 0
        ids = {self.trade_id(f.trade_id) for f in fills}
        await bounded(trades)
        await until(lambda: ex.watch_my_trades(symbol),
                    lambda: ids <= {t["id"] for t in ex.myTrades})
        streamed = {t["id"]: t for t in ex.myTrades if t["id"] in ids}
        rest = {t["id"]: t for t in await ex.fetch_my_trades(symbol) if t["id"] in ids}
        assert set(rest) == ids and {t["order"] for t in rest.values()} == {placed["id"]}
        for fill in fills:
            trade_id = self.trade_id(fill.trade_id)
            assert self.streamed_fee(streamed[trade_id]) == fill.fee, streamed[trade_id]
            assert Decimal(str(rest[trade_id]["fee"]["cost"])) == fill.fee, rest[trade_id]
            assert rest[trade_id]["fee"]["currency"] == fill.fee_asset

    def split_amount(self, symbol: str) -> float:
        """An order size of at least three lot steps (three trades)."""
        return self.trade_amount_of

    def streamed_fee(self, trade: dict[str, Any]) -> Decimal:
        """A streamed own trade's fee as ccxt.pro parsed it."""
        return Decimal(str(trade["fee"]["cost"]))

    def order_id(self, order_id: int) -> str:
        """The simulator's order id as the venue names it."""
        return str(order_id)

    def trade_id(self, trade_id: int) -> str:
        """The simulator's fill id as the venue names it."""
        return str(trade_id)

    def balance_params(self, symbol: str) -> dict[str, Any]:
        return {}

    def streamed_balance(self, ex: Any, symbol: str) -> Any:
        """ccxt's cache of the streamed balance (some venues keep one per account type),
        which the stream updates whether or not a watch is waiting."""
        return ex.balance

    @pytest.mark.asyncio
    async def test_a_resting_order_fills_on_the_stream_without_a_rest_call(
        self, start: ServerFactory, pro: ProFactory, symbol: str,
    ) -> None:
        server = await start(self.config())
        ex = self.private(pro, server)
        await ex.load_markets()
        price = server.sim.market.price(symbol)
        limit = ex.price_to_precision(symbol, float(price) * 0.95)
        orders = asyncio.ensure_future(ex.watch_orders(symbol))
        await self.until_private(server, "orders")
        placed = await ex.create_order(symbol, "limit", "buy", self.trade_amount_of, limit)
        await bounded(orders)
        await until(lambda: ex.watch_orders(symbol), lambda: any(
            o["id"] == placed["id"] for o in ex.orders))
        requests = server.sim.stats.requests.copy()
        server.sim.set_price(symbol, price * Decimal("0.9"))
        await until(lambda: ex.watch_orders(symbol), lambda: any(
            o["id"] == placed["id"] and o["status"] == "closed" for o in ex.orders))
        assert server.sim.stats.requests == requests, "no REST call was needed"


class PositionStreams(StreamConformance):
    """Venues with perpetuals: positions (after a REST snapshot on Binance and Bybit)
    and funding on the private streams."""

    linear: ClassVar[str] = "BTC/USDT:USDT"
    position_amount: ClassVar[float] = 0.01
    position_fields: ClassVar[tuple[str, ...]] = (
        "side", "contracts", "entryPrice", "markPrice", "unrealizedPnl", "leverage",
        "liquidationPrice", "marginMode", "initialMargin", "maintenanceMargin", "notional")
    """What ccxt parses from a streamed position, compared with the fetched one."""
    streamed_pnl: ClassVar[bool] = True
    """Whether the streamed settle total counts the unrealized PnL (OKX `eq`, Bybit
    `equity`; Binance streams the wallet balance `wb`)."""

    def contracts(self, inst: Instrument, qty: Decimal) -> float:
        """A position's size as ccxt reports it."""
        return float(qty)

    async def held(self, start: ServerFactory) -> SimulatorServer:
        """A server whose market stands still: only the market's clock is frozen, the
        server clock that checks ccxt's signatures keeps the wall time. A private test
        comparing money that depends on the mark (unrealized PnL in an equity) must hold
        it: on a moving path the stream's push and the REST read value it at different
        instants, further apart the busier the machine."""
        server: SimulatorServer = await start(self.config())
        server.sim.market.clock = ManualClock(server.sim.clock.now_ms())
        return server

    @pytest.mark.asyncio
    async def test_a_streamed_position_is_the_rest_position(
        self, start: ServerFactory, pro: ProFactory,
    ) -> None:
        """Open, then close: each time the stream pushes the position REST lists at that
        instant (the market is frozen so marks agree), the close as a flat position."""
        server = await self.held(start)
        ex = self.private(pro, server)
        await ex.load_markets()
        symbol = self.linear
        # Binance and Bybit answer the first watch with a REST snapshot, then subscribe.
        await bounded(ex.watch_positions([symbol]))
        positions = asyncio.ensure_future(ex.watch_positions([symbol]))
        await self.until_private(server, "positions")
        await ex.create_order(symbol, "market", "buy", self.position_amount)
        account = server.sim.accounts.get(API_KEY)
        assert account is not None
        fill = account.fills[-1]
        inst = server.sim.market.instrument(symbol)
        latest = [await bounded(positions)]

        async def watch() -> None:
            latest.append(await ex.watch_positions([symbol]))

        def held(contracts: float) -> Callable[[], bool]:
            return lambda: any(p["symbol"] == symbol and p["contracts"] == contracts
                               for p in latest[-1])

        await until(watch, held(self.contracts(inst, fill.qty)))
        streamed = next(p for p in latest[-1] if p["symbol"] == symbol)
        [rest] = [p for p in await ex.fetch_positions([symbol]) if p["contracts"]]
        assert streamed["entryPrice"] == float(fill.price)
        for field in self.position_fields:
            assert streamed[field] == rest[field], field
        await ex.create_order(symbol, "market", "sell", self.position_amount, None,
                              {"reduceOnly": True})
        await until(watch, held(0))

    def streamed_total(self, fetched: float, upnl: float) -> float:
        """The settle asset's streamed total given the REST total and the unrealized
        PnL: ccxt counts the PnL in one and not the other on some venues."""
        return fetched

    @pytest.mark.asyncio
    async def test_a_funding_payment_moves_the_streamed_balance(
        self, start: ServerFactory, pro: ProFactory,
    ) -> None:
        """The streamed settle balance equals the REST one before and after a funding
        payment (the market is held: both value the position at one mark), and its
        cash part moves by exactly the payment."""
        server = await self.held(start)
        ex = self.private(pro, server)
        await ex.load_markets()
        symbol, params = self.linear, self.balance_params(self.linear)
        settle = ex.market(symbol)["settle"]
        account = server.sim.accounts.get(API_KEY)
        assert account is not None
        balance = asyncio.ensure_future(ex.watch_balance(params))
        await self.until_private(server, "balance")
        await ex.create_order(symbol, "market", "buy", self.position_amount)
        await bounded(balance)

        async def streamed_cash() -> float:
            """The streamed total once it is the fetched one, less the PnL it counts."""
            fetched = (await ex.fetch_balance(params))[settle]["total"]
            [view] = derivatives.views(account, server.sim.market, symbol)
            upnl = float(view.unrealized_pnl)
            want = self.streamed_total(fetched, upnl)
            await until(lambda: ex.watch_balance(params), lambda: self.streamed_balance(
                ex, symbol).get(settle, {}).get("total") == pytest.approx(want))
            return want - upnl if self.streamed_pnl else want

        before = await streamed_cash()
        server.sim.set_funding_rate(symbol, Decimal("0.01"))  # longs pay 1 %
        server.sim.advance(FUNDING_INTERVAL_MS / 1000)  # the held mark jumps with the path
        [entry] = [e for e in account.perp.ledger if e.kind is LedgerKind.FUNDING]
        assert entry.amount < -1
        assert await streamed_cash() == pytest.approx(before + float(entry.amount))
