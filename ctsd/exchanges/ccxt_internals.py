"""Every part of ccxt the daemon relies on that is not ccxt's documented API, in one place.

ccxt's documented surface (unified methods such as `fetch_balance`, the
implicit endpoint methods, `markets`, `set_sandbox_mode`) is called where it
is needed. What the daemon does *beyond* it — wrapping the method every REST
request funnels through, reading each answer's headers, supplying nonces,
sharing one SSL context and one set of markets, moving every URL to another
base — reaches into ccxt's internals, and ccxt may rename them in any
release. So they are reached only through the functions below, and
`PRIVATE_ATTRIBUTES` lists each with the reason it is used:
`check_internals` (run by the factory on every new instance and by
`tests/exchanges/test_ccxt_internals.py` on every registered exchange's
class) fails loudly, naming what is gone, after a ccxt upgrade.

Only `ctsd.exchanges` imports ccxt: this module, on the first call that
needs it (importing takes about a second and 100 MB), and `ccxt_errors`,
for ccxt's exception classes, once one was raised.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

Fetch2 = Callable[[Any, Any, str, Any, Any], Awaitable[Any]]
"""`fetch2(path, api, method, params, config)`: every REST request of an instance."""
ResponseObserver = Callable[[int | None, Mapping[str, str], str, str], None]
"""`observer(status, headers, method, url)`; `url` as the production venue names it."""

PRIVATE_ATTRIBUTES: Mapping[str, str] = {
    "fetch2": "every REST request funnels through it: the rate limiter wraps it",
    "on_rest_response": "called with each answer's status and headers before ccxt raises "
                        "for it: usage headers and Retry-After are read from it",
    "calculate_rate_limiter_cost": "ccxt's per-endpoint cost: the weight a request is charged",
    "nonce": "replaced by a per-key sequence where a venue wants strictly increasing nonces; "
             "read as the venue-aligned timestamp of a fenced request's validity window",
    "ssl_context": "one context for every instance instead of one (16 ms, a CA store) each",
    "timeout_on_exit": "close() waits this long for its own TLS session; ours is shared",
    "urls": "urls['api'] is rewritten for a `base_url` (and 'test'/'demo' dropped)",
    "implode_hostname": "expands the {hostname} placeholder before a URL is rewritten",
    "set_markets_from_exchange": "one loaded market set shared by every instance of a target",
    "sign": "synchronous, called by fetch2 with no await before it: a fenced request is "
            "signed with options of its own where ccxt takes the venue's window from them",
}
"""Attribute → why the daemon uses it; every ccxt exchange class must have each."""

PER_CLASS_ATTRIBUTES: Mapping[str, str] = {
    "get_exceptions_by_url": "Binance picks its error map by production host: a rewritten "
                             "URL must map back, or -2019 would not be InsufficientFunds",
}
"""Attributes some classes have; used where present."""

PRO_BOOK_ATTRIBUTES: Mapping[str, str] = {
    "handle_order_book": "each book message is read for what ccxt.pro does not check on "
                         "Kraken (its checksum) and Bybit (its update id): "
                         "`tap_book_messages`",
    "get_message_hash": "names a book's subscription to forget at a resync (`forget_book`)",
    "orderbooks": "the book forgotten at a resync (`forget_book`)",
}
"""What `tap_book_messages` and `forget_book` use of a ccxt.pro class whose books the
daemon checks itself (Kraken's and Bybit's, `ctsd.exchanges.book_checks`)."""

_FETCH2_PARAMETERS = ("path", "api", "method", "params", "config")
_ON_REST_RESPONSE_PARAMETERS = (
    "code", "reason", "url", "method", "response_headers", "response_body", "request_headers",
    "request_body")


async def load(*, pro: bool = False) -> None:
    """Import `ccxt.async_support` (with `pro`, `ccxt.pro`) on a worker thread if not yet.

    The first import runs every module of ccxt's hundred-odd exchanges: a second of CPU
    on an idle machine, ten on a loaded one. Done on the event loop it froze every task,
    so a request already in flight on the same loop (to a venue, or the in-process
    simulator) ran past ccxt's timeout; on a thread the loop keeps turning.
    """
    name = "ccxt.pro" if pro else "ccxt.async_support"
    if name not in sys.modules:
        await asyncio.to_thread(importlib.import_module, name)


def async_support() -> Any:
    """`ccxt.async_support`, imported on first use (async code awaits `load` first)."""
    import ccxt.async_support

    return ccxt.async_support


def exchange_class(name: str, *, pro: bool = False) -> Any:
    """The async class `name`, or its `ccxt.pro` subclass (WebSockets) with `pro`."""
    if pro:
        import ccxt.pro

        return getattr(ccxt.pro, name)
    return getattr(async_support(), name)


def missing_classes(names: Iterable[str]) -> list[str]:
    """Which of `names` ccxt has no async exchange class for."""
    module = async_support()
    return [name for name in names if not hasattr(module, name)]


def missing_internals(exchange: Any) -> list[str]:
    """What of `PRIVATE_ATTRIBUTES` `exchange` lacks, or has with another signature."""
    missing = [name for name in PRIVATE_ATTRIBUTES if not hasattr(exchange, name)]
    for name, expected in (("fetch2", _FETCH2_PARAMETERS),
                           ("on_rest_response", _ON_REST_RESPONSE_PARAMETERS)):
        method = getattr(exchange, name, None)
        if method is not None and tuple(inspect.signature(method).parameters) != expected:
            missing.append(f"{name}({', '.join(expected)}) (now {inspect.signature(method)})")
    if not callable(getattr(exchange, "client", None)):  # a name too common for the list
        missing.append("client (makes each WebSocket client, whose dial `pace_opens` paces)")
    return missing


def check_internals(exchange: Any) -> None:
    """Raise, naming each, if `exchange` lacks an internal the daemon relies on."""
    missing = missing_internals(exchange)
    if missing:
        raise RuntimeError(
            f"ccxt {getattr(async_support(), '__version__', '?')} {type(exchange).__name__} "
            f"lacks {', '.join(missing)}: see ctsd.exchanges.ccxt_internals")


# --- requests ---------------------------------------------------------------------------


def request_cost(exchange: Any, api: Any, method: str, path: Any, params: Any,
                 config: Any) -> float:
    """ccxt's cost of one request to its endpoint table (ccxt's own throttle would wait it)."""
    return float(exchange.calculate_rate_limiter_cost(api, method, path, params, config) or 0)


def wrap_requests(exchange: Any, around: Callable[[Fetch2], Fetch2]) -> None:
    """Every REST request of `exchange` goes through `around(original fetch2)`."""
    exchange.fetch2 = around(exchange.fetch2)


def observe_responses(exchange: Any, observer: ResponseObserver) -> None:
    """`observer(status, headers, method, url)` sees each answer before ccxt raises for
    its status; a URL rewritten by `rebase_urls` is shown as the production one."""
    original = exchange.on_rest_response

    def on_rest_response(code: Any, reason: Any, url: Any, method: Any, headers: Any,
                         body: Any, request_headers: Any, request_body: Any) -> Any:
        observer(int(code) if code is not None else None, dict(headers or {}),
                 str(method or ""), production_url(exchange, str(url or "")))
        return original(code, reason, url, method, headers, body, request_headers,
                        request_body)

    exchange.on_rest_response = on_rest_response


def sign_with_options(exchange: Any,
                      overrides: Callable[[str, Mapping[str, Any]], Mapping[str, Any] | None],
                      ) -> None:
    """Each request of `exchange` is signed with its options updated by
    `overrides(method, options)` where that is not None (Bybit's `recvWindow` and the
    `timeDifference` its signed timestamp subtracts: ccxt takes both from its options, never
    from params), the options restored once signed: `sign` is synchronous, so no other
    request of the instance sees them."""
    original = exchange.sign
    options: dict[str, Any] = exchange.options

    def sign(path: Any, api: Any = "public", method: str = "GET", *args: Any,
             **kwargs: Any) -> Any:
        chosen = overrides(str(method), options)
        if not chosen:
            return original(path, api, method, *args, **kwargs)
        saved = {key: options[key] for key in chosen if key in options}
        options.update(chosen)
        try:
            return original(path, api, method, *args, **kwargs)
        finally:
            for key in chosen:
                options.pop(key, None)
            options.update(saved)

    exchange.sign = sign


def use_nonce(exchange: Any, nonce: Callable[[], int]) -> None:
    exchange.nonce = nonce


def venue_timestamp_ms(exchange: Any) -> int:
    """The timestamp ccxt would sign a request with now (its clock minus the venue's
    measured time difference, where it keeps one)."""
    return int(exchange.nonce())


# --- sharing between instances -------------------------------------------------------------


def share_transport(exchange: Any, ssl_context: Any) -> None:
    """Use `ssl_context` (ccxt builds one per instance on first use, even with a shared
    session) and close without the grace period meant for an instance's own TLS session."""
    exchange.ssl_context = ssl_context
    exchange.timeout_on_exit = 0


def share_markets(exchange: Any, source: Any) -> None:
    """`exchange` uses the markets `source` has loaded, without a request of its own."""
    exchange.set_markets_from_exchange(source)


_TIMERS = "_ctsd_timers"


def own_timers(exchange: Any) -> None:
    """Keep the timers a ccxt.pro `exchange` schedules (its `delay`: Binance's listenKey
    keepalive every 20 minutes, its margin listenToken renewal a day on), for `close_ws`
    to cancel: ccxt never cancels them, and a renewal firing on a closed instance logs in
    again through the shared HTTP session and opens a private socket nobody reads (and
    keeps the instance for a day meanwhile)."""
    timers: list[asyncio.TimerHandle] = []
    schedule = exchange.delay

    def delay(timeout: Any, method: Any, *args: Any) -> Any:
        now = asyncio.get_running_loop().time()
        timers[:] = [t for t in timers if not t.cancelled() and t.when() > now]
        handle = schedule(timeout, method, *args)
        timers.append(handle)
        return handle

    exchange.delay = delay
    setattr(exchange, _TIMERS, timers)


def pending_timers(exchange: Any) -> int:
    """Timers of `exchange` (see `own_timers`) that have neither fired nor been cancelled."""
    timers: list[asyncio.TimerHandle] = getattr(exchange, _TIMERS, [])
    now = asyncio.get_running_loop().time()
    return sum(1 for t in timers if not t.cancelled() and t.when() > now)


async def close_ws(exchange: Any, connect_timeout_s: float = 10.0) -> None:
    """Close a ccxt.pro `exchange` without leaking a socket that is still connecting, nor
    a timer that would log it in again later (`own_timers`).

    ccxt.pro dials in a task of its own and its `close()` closes only connections that
    exist: one closed mid-dial finishes dialling afterwards and stays open for good.
    So dials under way are cancelled (those `pace_opens` runs) and waited for (bounded)
    before closing: a handshake the venue does not answer would otherwise hold the close
    for ccxt's whole connection timeout, and with it the stream that replaces this one."""
    setattr(exchange, _CLOSING, True)  # a dial still waiting for its pace never starts
    for timer in getattr(exchange, _TIMERS, ()):
        timer.cancel()
    clients = list((getattr(exchange, "clients", None) or {}).values())
    dialling: list[asyncio.Future[Any]] = []
    for c in clients:
        if not getattr(c, "connecting", False) or c.connected.done():
            continue
        task = getattr(c, _DIAL, None)
        if task is not None and not task.done():
            task.cancel()  # a handshake cut short leaves no socket; one done is closed below
            dialling.append(task)
        elif task is None and not getattr(c, _PACING, False):
            dialling.append(c.connected)
    if dialling:
        await asyncio.wait(dialling, timeout=connect_timeout_s)
    await exchange.close()
    for timer in getattr(exchange, _TIMERS, ()):  # scheduled while the dials finished
        timer.cancel()


_PACED = "_ctsd_paced"
_PACING = "_ctsd_pacing"
_DIAL = "_ctsd_dial"
"""The task a client dials in (`pace_opens`), for `close_ws` to cancel."""
_CLOSING = "_ctsd_closing"


def pace_opens(exchange: Any, wait: Callable[[], Awaitable[None]]) -> None:
    """Every WebSocket a ccxt.pro `exchange` dials waits for `wait()` first (a venue's
    new-connections-per-IP pacer): the sockets its watches open, and the ones ccxt.pro
    opens again by itself on the next watch after the venue closed one (`ws_clients`),
    which pacing the instance when it was made could not see. Paced at the dial, not
    when the stream was made, a socket reaches the venue right after its turn.

    A client still waiting for its turn when the instance closes never dials."""
    make = exchange.client

    def client(url: str) -> Any:
        made = make(url)
        if not getattr(made, _PACED, False):
            dial = made.open

            async def paced(session: Any, backoff_delay: float = 0) -> None:
                setattr(made, _DIAL, asyncio.current_task())
                setattr(made, _PACING, True)
                try:
                    await wait()
                finally:
                    setattr(made, _PACING, False)
                if not getattr(exchange, _CLOSING, False):
                    await dial(session, backoff_delay)

            made.open = paced
            setattr(made, _PACED, True)
        return made

    exchange.client = client


def ws_clients(exchange: Any) -> dict[str, Any]:
    """A ccxt.pro `exchange`'s WebSocket clients by URL. ccxt.pro forgets a client the
    venue closed and makes a new one on the next watch of its URL: a new object there is
    a reconnect that no watch of the caller's saw fail."""
    return dict(getattr(exchange, "clients", None) or {})


def tap_book_messages(exchange: Any, tap: Callable[[Any], bool]) -> None:
    """ccxt.pro: `tap(message)` sees each order book message before `exchange` handles
    it, and drops it by answering False (`ctsd.exchanges.book_checks`: an update of a
    book being resynced, which ccxt has forgotten)."""
    handle = exchange.handle_order_book

    def handled(client: Any, message: Any) -> Any:
        return handle(client, message) if tap(message) else None

    exchange.handle_order_book = handled  # looked up on the instance for each message


async def forget_book(exchange: Any, symbol: str, unsubscribe: dict[str, Any]) -> None:
    """ccxt.pro, where it has no `un_watch_order_book` (Kraken): drop `symbol`'s order
    book and its subscription, and send the venue's `unsubscribe` request on the socket
    the book came by, so that the next `watch_order_book` subscribes again and gets a
    snapshot.

    Forgotten only once the request is sent: a send that fails (a closed socket) leaves
    ccxt subscribed as the venue may still be, never ccxt subscribing again on a socket
    the venue holds the book on, which Kraken refuses for good. Cut between the send and
    the forget, ccxt would stay subscribed to a book the venue no longer sends: callers
    run it whole (`book_checks.Resyncs`)."""
    message_hash = exchange.get_message_hash("orderbook", None, symbol)
    for client in ws_clients(exchange).values():
        if message_hash in client.subscriptions:
            await client.send(unsubscribe)
            client.subscriptions.pop(message_hash, None)
    exchange.orderbooks.pop(symbol, None)


def ws_connected(exchange: Any) -> bool:
    """Whether any WebSocket client of a ccxt.pro `exchange` has connected (its
    `connected` future resolved): a private stream with nothing to say is still up."""
    clients = getattr(exchange, "clients", None) or {}
    for client in clients.values():
        connected = getattr(client, "connected", None)
        if connected is not None and connected.done() and not connected.cancelled() and (
                connected.exception() is None):
            return True
    return False


def ws_pacing(exchange: Any) -> bool:
    """Whether a WebSocket client of `exchange` is waiting for its turn to dial
    (`pace_opens`): a stream not connected yet for that is queued, not stuck."""
    clients = getattr(exchange, "clients", None) or {}
    return any(getattr(client, _PACING, False) for client in clients.values())


MARKET_ATTRIBUTES = ("markets", "markets_by_id", "symbols", "ids", "currencies",
                     "currencies_by_id", "baseCurrencies", "quoteCurrencies", "codes")
"""What `load_markets` replaces (the list `set_markets_from_exchange` copies)."""


def market_state(exchange: Any) -> dict[str, Any]:
    """References to the markets `exchange` holds now, to put back with `restore_..`."""
    return {name: getattr(exchange, name, None) for name in MARKET_ATTRIBUTES}


def restore_market_state(exchange: Any, state: dict[str, Any]) -> None:
    for name, value in state.items():
        setattr(exchange, name, value)


# --- another base URL ---------------------------------------------------------------------

UrlMap = list[tuple[str, str]]
"""(rewritten URL prefix, original URL prefix), longest rewritten prefix first."""
_URL_MAP = "ctsd_url_map"
"""Our own attribute on a rebased instance: its `UrlMap` (no ccxt name)."""


def production_url(exchange: Any, url: str) -> str:
    """`url` as the venue's production host names it, where `rebase_urls` rewrote it: what
    an error message shows (the simulator's prefix would name no real endpoint)."""
    for rewritten, production in getattr(exchange, _URL_MAP, ()):
        if url.startswith(rewritten):
            return str(production) + url[len(rewritten):]
    return url


def rebase_urls(exchange: Any, rewrite: Callable[[str], str]) -> Any:
    """Send every REST request of `exchange` to `rewrite(url)` instead; returns `exchange`.

    Every string under `urls['api']` (nested for some venues) is rewritten, and
    `urls['test']` (and the demo-mode `demo`/`demotrading` entries) dropped so
    sandbox or demo mode cannot silently switch back to the original hosts. A
    class that picks its error map by host (`get_exceptions_by_url`) is shown the
    original URL behind a rewritten one, so it raises what it raises in production.
    """
    pairs: UrlMap = []

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            new = rewrite(exchange.implode_hostname(node))
            pairs.append((new, node))
            return new
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        return node

    exchange.urls["api"] = walk(exchange.urls["api"])
    for key in ("test", "demo", "demotrading"):  # every mode that swaps urls["api"] back
        exchange.urls.pop(key, None)
    pairs.sort(key=lambda pair: len(pair[0]), reverse=True)
    setattr(exchange, _URL_MAP, pairs)
    _restore_host_based_exceptions(exchange)
    return exchange


def _restore_host_based_exceptions(exchange: Any) -> None:
    original = getattr(exchange, "get_exceptions_by_url", None)
    if original is None:
        return

    def get_exceptions_by_url(url: str | None, exact_or_broad: str) -> Any:
        return original(None if url is None else production_url(exchange, url),
                        exact_or_broad)

    exchange.get_exceptions_by_url = get_exceptions_by_url
