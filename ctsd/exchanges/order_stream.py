"""`OrderStream`: a LIVE connection's private ccxt.pro WebSocket, as frozen values.

Why apart from `ctsd.exchanges.streams`: a private stream is one per connection and
logs in, where the public ones are shared shards; what they have in common is how a
ccxt.pro instance is closed (`close_exchange`) and how its calls' errors are
translated (`Translate`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ctsd.exchanges import answers
from ctsd.exchanges.ccxt_errors import malformed
from ctsd.exchanges.model import ConnectionTarget, Order, Position
from ctsd.exchanges.streams import Translate, close_exchange
from ctsd.tasks import AsyncClosing, retrieve_outcome


class OrderStream(AsyncClosing):
    """A LIVE connection's private order stream (fills and order states) on ccxt.pro, and
    on perpetuals its positions stream too (Binance USDⓈ-M `ACCOUNT_UPDATE` on the same
    listenKey socket, Bybit `position`, OKX `positions`: the same socket as the orders)."""

    def __init__(self, exchange: Any, target: ConnectionTarget, translate: Translate, *,
                 per_trade_fees: bool = False, filled_field: str | None = None) -> None:
        self._exchange = exchange
        self.target = target
        self._translate = translate
        self._per_trade_fees = per_trade_fees
        """The venue streams each trade's fee, not the order's (`ClientProfile`)."""
        self._filled_field = filled_field
        """Where the venue's update says what an order filled when ccxt.pro does not
        (`ClientProfile.stream_filled_field`)."""
        self._seen: dict[str, Any] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}
        """The watches not yet answered ("orders", "positions"), kept across calls: a
        watch dropped for the other's answer would lose the message it waits for."""

    def connected(self) -> bool:
        """Whether a WebSocket of this stream is open (ccxt says nothing until data)."""
        from ctsd.exchanges import ccxt_internals

        return ccxt_internals.ws_connected(self._exchange)

    def pacing(self) -> bool:
        """Whether its WebSocket waits for the venue's connection pacer to dial."""
        from ctsd.exchanges import ccxt_internals

        return ccxt_internals.ws_pacing(self._exchange)

    async def orders(self) -> list[Order]:
        """The next order updates (see `updates`)."""
        orders, _ = await self.updates(positions=False)
        return orders

    async def updates(self, positions: bool) -> tuple[list[Order], list[Position]]:
        """The next order updates (cumulative filled, average, fee; amounts in base units,
        as the REST client answers them), after logging in, or with `positions` the next
        position updates (a flat leg has amount 0), whichever comes first.

        ccxt.pro resolves a watch with the message that woke it; an update that arrives
        before the next watch only lands in its order cache, and an idle account may
        send nothing more to wake that watch. So the cache is read for what changed
        since the last answer, first without waiting, then after each watch. Positions
        come as ccxt parsed them, each message's legs (no REST snapshot: the broker
        reads positions over REST when it reconciles)."""
        news = self._news()
        if news:
            return self._orders(news), []
        self._start("orders", self._watch_orders)
        if positions:
            self._start("positions", self._watch_positions)
        done, _ = await asyncio.wait(self._pending.values(),
                                     return_when=asyncio.FIRST_COMPLETED)
        answered = {name: future for name, future in self._pending.items() if future in done}
        for name in answered:
            del self._pending[name]
        found: tuple[list[Order], list[Position]] = ([], [])
        for name, future in sorted(answered.items()):
            raw = future.result()  # a failure raises: the feed calls it a gap
            if name == "orders":
                found[0].extend(self._orders(self._news() or list(raw)))
            else:
                found[1].extend(self._positions(raw))
        return found

    def _start(self, name: str, watch: Callable[[], Awaitable[Any]]) -> None:
        if name not in self._pending:
            future = self._pending[name] = asyncio.ensure_future(self._translate(watch))
            future.add_done_callback(retrieve_outcome)  # one failing may end the other's wait

    def _orders(self, raw: list[Any]) -> list[Order]:
        markets = self._exchange.markets
        found = [answers.in_base(o, answers.contract_size(markets, o.symbol))
                 for o in map(answers.order, map(self._with_filled, raw))]
        return self._with_trades(found) if self._per_trade_fees else found

    def _with_filled(self, raw: Any) -> Any:
        """ccxt.pro's order, with the venue's own filled amount where ccxt left it unset
        (its cache merges each message's fields into `info`: the latest amount)."""
        field = self._filled_field
        if field is None or not isinstance(raw, Mapping) or raw.get("filled") is not None:
            return raw
        info = raw.get("info")
        filled = info.get(field) if isinstance(info, Mapping) else None
        return raw if filled is None else {**raw, "filled": filled}

    def _with_trades(self, orders: list[Order]) -> list[Order]:
        """Each order with the trades of it ccxt.pro cached (its own-trade cache holds
        every execution message it got, by trade id): ccxt's sum of their fees is only
        what this connection saw, so the broker is told which trades that was."""
        by_order: dict[str, list[Any]] = {}
        for item in list(self._exchange.myTrades or ()):
            by_order.setdefault(str(item.get("order")), []).append(item)
        markets = self._exchange.markets
        return [answers.with_trades(o, answers.trades(
                    by_order.get(o.id, []), answers.contract_size(markets, o.symbol)))
                for o in orders]

    def _positions(self, raw: Any) -> list[Position]:
        if not isinstance(raw, list):
            raise malformed(f"{self.target.exchange} position update is not a list")
        markets, found = self._exchange.markets, []
        for row in raw:
            contracts = answers.decimal(row.get("contracts")) if isinstance(row, Mapping) \
                else None
            if contracts is None or not row.get("symbol"):
                raise malformed(f"{self.target.exchange} position update lacks symbol or "
                                "contracts")
            found.append(answers.position_row(
                row, contracts, answers.contract_size(markets, str(row["symbol"])),
                self.target.exchange))
        return found

    async def _watch_positions(self) -> Any:
        # Updates only: the broker's REST read is the snapshot (through the rate limiter).
        self._exchange.options["watchPositions"] = {
            **self._exchange.options.get("watchPositions", {}),
            "fetchPositionsSnapshot": False, "awaitPositionsSnapshot": False}
        return await self._exchange.watch_positions()

    def _news(self) -> list[Any]:
        """Cached orders whose state moved since last returned (ccxt updates a cached
        order in place, so its state is compared, not its identity)."""
        found, seen = [], {}
        for item in list(self._exchange.orders or ()):
            key = str(item.get("id"))
            seen[key] = state = tuple(item.get(k) for k in (
                "status", "filled", "cost", "average", "lastTradeTimestamp",
                "lastUpdateTimestamp"))
            if self._seen.get(key) != state:
                found.append(dict(item))
        self._seen = seen  # only what ccxt still caches (it keeps 1,000 at most)
        return found

    async def _watch_orders(self) -> Any:
        try:
            return await self._exchange.watch_orders()
        except KeyError as exc:
            # ccxt 4.5.90's Binance spot: a refused login deletes one subscription twice
            # and surfaces as KeyError('spot') over the AuthenticationError.
            context = exc.__context__
            if context is not None:
                raise context from exc
            raise

    async def close(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        await close_exchange(self._exchange)
