"""What tells a streamed order book has lost an update, where ccxt.pro does not look.

ccxt.pro checks Binance's update ids and OKX's `seqId` and raises on a gap, and the
next watch resyncs. Two venues' books it takes on trust:

- **Kraken** sends no sequence number: each update carries the CRC32 of the best ten
  asks and bids after it. ccxt.pro's check is switched off ("the exchange checksum
  was not reliable"): it formats its own float levels as if they were strings, and
  after a mismatch it subscribes again on a socket Kraken still has subscribed,
  which Kraken refuses ("Already subscribed") while the updates go on to a book
  ccxt has deleted. Here the checksum is computed at the pair's precision as
  Kraken's docs define it, and a wrong book is resynced as Kraken says:
  unsubscribed, then subscribed again, which brings a snapshot (ccxt.pro has no
  `un_watch_order_book` for Kraken: `ccxt_internals.forget_book` sends it).
- **Bybit** numbers each message of a book (`u`, one more each time); ccxt.pro
  applies deltas whatever their number. A skipped number is a lost update, and
  the book is resynced by `un_watch_order_book` and a new subscription (Bybit
  answers it with a snapshot).

Both read each book message as ccxt.pro handles it (`ccxt_internals.tap_book_messages`)
and are asked about a book when a watch answers it: ccxt.pro applies a message to
the book and the check notes it in the same call, so the book answered and what
was noted are of the same message, however many arrived before the watch returned.
Without these, a lost update left the hub serving a wrong book for as long as the
levels it touched stayed near the top.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from decimal import Decimal
from functools import partial
from typing import Any, Protocol

from ctsd.exchanges import ccxt_internals
from ctsd.tasks import retrieve_outcome

LEVELS = 10
"""Levels of each side Kraken's checksum covers (the best ten, whatever the depth)."""
RESYNC_TASK = "book-resync"
"""The name each resync task starts with (`Resyncs`)."""


class BookChecks(Protocol):
    def problem(self, symbol: str, book: Any) -> str | None:
        """Why `book` (as ccxt.pro answered it) is not the venue's, or None."""
        ...

    async def resync(self, symbol: str, depth: int) -> None:
        """Unsubscribe the book and forget it: the next watch subscribes it again and
        gets a snapshot. Once begun it runs to its end, whatever happens to the caller
        (`Resyncs`)."""
        ...

    async def settled(self, symbol: str) -> None:
        """Until a resync of `symbol` under way has ended (one a cancelled watch began)."""
        ...

    def cancel(self) -> None:
        """Cancel the resyncs under way: the ccxt.pro instance is being closed."""
        ...


def decimals(step: Any) -> int:
    """The decimal places of a precision ccxt gives as a step (0.1 → 1, 1e-08 → 8)."""
    exponent = Decimal(str(step)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def checksum(asks: Sequence[Sequence[Any]], bids: Sequence[Sequence[Any]],
             price_places: int, amount_places: int) -> int:
    """Kraken's: CRC32 of the best ten asks, then the best ten bids, each level its price
    then its quantity at the pair's precision with the point and leading zeros removed."""

    def digits(value: Any, places: int) -> str:
        return f"{Decimal(str(value)):.{places}f}".replace(".", "").lstrip("0")

    text = "".join(digits(level[0], price_places) + digits(level[1], amount_places)
                   for level in (*asks[:LEVELS], *bids[:LEVELS]))
    return zlib.crc32(text.encode())


def _first_data(message: Any) -> dict[str, Any]:
    data = message.get("data") if isinstance(message, dict) else None
    if isinstance(data, list):
        data = data[0] if data else None
    return data if isinstance(data, dict) else {}


class Resyncs:
    """Resyncs that run to their end once begun, whatever happens to the watch that began
    them, and that the next watch of the book waits for.

    A resync is a request to the venue and a change of ccxt.pro's state that belong
    together, and the hub cancels the task running it whenever the book loses its last
    consumer, its shard redials or the daemon stops. Cut between the two, they disagree:
    Bybit's unsubscribe was on its way while ccxt.pro still held the subscription, so a
    watch of the book made before the venue answered subscribed nothing and was then
    failed by ccxt.pro's handling of that answer (`UnsubscribeError`), which the hub took
    for a venue refusing the book for good; Kraken's, cut after its unsubscribe was
    written (aiohttp then waits for a paused transport to drain), would leave ccxt
    subscribed to a book the venue had stopped sending, until the data-age watchdog
    redialled. So a resync runs as a task of its own (its caller, cancelled, only stops
    waiting), and the next watch of that book begins once it has ended (`settled`). Its
    owner, the stream, cancels the ones under way when it closes the ccxt.pro instance,
    whose state then no longer matters.
    """

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[None]] = {}

    async def resync(self, symbol: str, depth: int) -> None:
        task = self._running.get(symbol)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(
                self._resync(symbol, depth), name=f"{RESYNC_TASK}:{symbol}")
            task.add_done_callback(partial(self._ended, symbol))
            self._running[symbol] = task
        await asyncio.shield(task)

    async def _resync(self, symbol: str, depth: int) -> None:
        raise NotImplementedError

    def _ended(self, symbol: str, task: asyncio.Task[None]) -> None:
        if self._running.get(symbol) is task:
            del self._running[symbol]
        retrieve_outcome(task)  # a caller that stopped waiting never sees it

    async def settled(self, symbol: str) -> None:
        task = self._running.get(symbol)
        if task is not None:
            await asyncio.wait((task,))  # its failure was its caller's to see

    def cancel(self) -> None:
        for task in self._running.values():
            task.cancel()


class KrakenChecksums(Resyncs):
    """The checksum of each Kraken book's last message, against the book ccxt.pro holds."""

    def __init__(self, exchange: Any) -> None:
        super().__init__()
        self._exchange = exchange
        self._sent: dict[str, int] = {}
        self._resyncing: set[str] = set()
        ccxt_internals.tap_book_messages(exchange, self._seen)

    def _seen(self, message: Any) -> bool:
        """False for an update of a book being resynced: ccxt has forgotten the book (it
        would fail on it), and the snapshot is on its way."""
        first = _first_data(message)
        symbol, sent = first.get("symbol"), first.get("checksum")
        if not isinstance(symbol, str):
            return True
        if message.get("type") == "snapshot":
            self._resyncing.discard(symbol)
        elif symbol in self._resyncing:
            return False
        if isinstance(sent, int):
            self._sent[symbol] = sent
        return True

    def problem(self, symbol: str, book: Any) -> str | None:
        sent = self._sent.get(symbol)
        market = (self._exchange.markets or {}).get(symbol)
        if sent is None or market is None:
            return None
        precision = market.get("precision") or {}
        held = checksum(book.get("asks") or (), book.get("bids") or (),
                        decimals(precision.get("price")), decimals(precision.get("amount")))
        if held == sent:
            return None
        return f"checksum {held} of the book held, {sent} sent: an update was lost"

    async def _resync(self, symbol: str, depth: int) -> None:
        await ccxt_internals.forget_book(self._exchange, symbol, {
            "method": "unsubscribe",
            "params": {"channel": "book", "symbol": [symbol], "depth": depth}})
        self._sent.pop(symbol, None)
        self._resyncing.add(symbol)


class BybitUpdateIds(Resyncs):
    """The update id (`u`) of each Bybit book's messages: a number skipped is an update
    lost, until the next snapshot."""

    def __init__(self, exchange: Any) -> None:
        super().__init__()
        self._exchange = exchange
        self._last: dict[str, int] = {}
        self._lost: dict[str, str] = {}
        ccxt_internals.tap_book_messages(exchange, self._seen)

    def _seen(self, message: Any) -> bool:
        data = _first_data(message)
        market_id, number = data.get("s"), data.get("u")
        if not isinstance(market_id, str) or not isinstance(number, int):
            return True
        last = self._last.get(market_id)
        if message.get("type") == "snapshot":
            self._lost.pop(market_id, None)
        elif last is not None and number != last + 1 and market_id not in self._lost:
            self._lost[market_id] = (f"update {number} came after {last}: "
                                     f"{number - last - 1} lost")
        self._last[market_id] = number
        return True

    def problem(self, symbol: str, book: Any) -> str | None:
        market = (self._exchange.markets or {}).get(symbol)
        return None if market is None else self._lost.get(market.get("id"))

    async def _resync(self, symbol: str, depth: int) -> None:
        await self._exchange.un_watch_order_book(symbol, {"limit": depth})


def book_checks(exchange_id: str, exchange: Any) -> BookChecks | None:
    """The checks a venue's books need beyond ccxt.pro's own (None: ccxt's suffice)."""
    if exchange_id == "kraken":
        return KrakenChecksums(exchange)
    if exchange_id == "bybit":
        return BybitUpdateIds(exchange)
    return None
