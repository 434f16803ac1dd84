"""`CcxtCalls`: the one path every request of an `ExchangeClient` takes to ccxt.

Every public method of the client

1. makes sure the shared markets are loaded and adopted (no copy),
2. runs the ccxt call in its lane (orders first, tests, then polling), each
   HTTP request of it waiting for the rate limiter (`ctsd.exchanges.throttle`),
3. translates whatever ccxt raises in one place (`ctsd.exchanges.ccxt_errors`),
4. validates the answer into frozen values (`ctsd.exchanges.answers`).

Steps 1 to 3 are here (`_run`); the classes that hold the client's questions by
concern (`probe_calls`, `market_reads`, `order_calls`) build on this one and do
step 4. So do the venue readers (`ctsd.exchanges.perpetuals`, `margin`, `options`
and `<venue>/`), through `call` and `read_venue`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from ctsd.errors import NotFound
from ctsd.exchanges import answers
from ctsd.exchanges.ccxt_errors import malformed, translated
from ctsd.exchanges.kept_answers import keep_answers
from ctsd.exchanges.markets import MarketCache
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget, Holding
from ctsd.exchanges.profile import ClientProfile
from ctsd.exchanges.throttle import RequestGate, lane
from ctsd.ratelimit import Lane
from ctsd.tasks import AsyncClosing

T = TypeVar("T")


class CcxtCalls(AsyncClosing):
    """One ccxt instance's requests in their lane, under the rate limiter, translated."""

    def __init__(
        self, exchange: Any, target: ConnectionTarget, profile: ClientProfile,
        markets: MarketCache, gate: RequestGate, credentials: ApiCredentials | None,
        default_lane: Lane = Lane.POLL, on_account_uid: Callable[[str], None] | None = None,
    ) -> None:
        self._exchange = exchange
        self._on_account_uid = on_account_uid
        """Told the key's UID once learned (the factory: later clients of the key share it)."""
        self._answers = keep_answers(exchange, (
            probe.method for probe in (profile.permissions, profile.account_uid,
                                       *profile.permissions_for.values()) if probe))
        self.target = target
        self._profile = profile
        self._markets = markets
        self._gate = gate
        self._secrets = credentials.values() if credentials else ()
        self._lane = default_lane
        self._markets_version = 0
        self._authenticated = False
        self._holdings: tuple[Holding, ...] | None = None
        self._balance_answer: Any = None
        """The venue's own answer to the last balance request (ccxt's `info`)."""
        self._closed = False

    # --- plumbing ----------------------------------------------------------------------

    async def translate(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run one ccxt coroutine with this client's error translation."""
        with translated(self.target.exchange, secrets=self._secrets,
                        codes=self._profile.error_codes,
                        codes_after_auth=self._profile.error_codes_after_auth,
                        authenticated=self._authenticated,
                        unsupported=self._profile.unsupported_codes):
            return await call()

    async def call(self, method: str, *args: Any, lane: Lane | None = None,
                   signed: bool = False) -> Any:
        """ccxt's `method` (unified or implicit API) with this client's lane, limiter and
        error translation: for the venue readers of `ctsd.exchanges.perpetuals`."""
        bound = getattr(self._exchange, method)
        return await self._run(lambda: bound(*args), lane, signed)

    @property
    def profile(self) -> ClientProfile:
        return self._profile

    def has(self, capability: str) -> bool:
        """Whether ccxt implements `capability` (a `has` key) for this venue."""
        return bool((self._exchange.has or {}).get(capability))

    def market(self, symbol: str) -> Mapping[str, Any]:
        """ccxt's market of a listed `symbol` (markets must be loaded)."""
        market = (self._exchange.markets or {}).get(symbol)
        if not isinstance(market, Mapping):
            raise NotFound(f"{self.target.exchange} does not list {symbol}")
        return market

    def contract_symbols(self) -> list[str]:
        """The loaded contract markets' symbols (markets must be loaded)."""
        return sorted(s for s, m in (self._exchange.markets or {}).items()
                      if isinstance(m, dict) and m.get("contract"))

    def symbol_of(self, market_id: str) -> str:
        """The unified symbol of a venue market id (`BTCUSDT` → `BTC/USDT:USDT`)."""
        return str(self._exchange.safe_symbol(market_id))

    def contract_size(self, symbol: str) -> Decimal:
        """Base units per contract (`answers.contract_size`)."""
        return answers.contract_size(self._exchange.markets, symbol)

    async def _run(self, call: Callable[[], Awaitable[T]], in_lane: Lane | None = None,
                   signed: bool = False) -> T:
        if self._closed:
            raise RuntimeError("exchange client is closed")
        with lane(self._lane if in_lane is None else in_lane):
            await self._adopt_markets()
            result = await self.translate(call)
        if signed:
            self._authenticated = True
        return result

    async def _adopt_markets(self) -> None:
        await self._markets.ensure()
        self._markets_version = self._markets.share_with(self._exchange, self._markets_version)

    async def load_markets(self) -> int:
        """Loads (or reuses) the shared markets of this target; how many there are."""
        with lane(self._lane):
            await self._adopt_markets()
        return self._markets.count

    async def read_venue(self, read: Callable[[], Awaitable[T]], what: str) -> T:
        """A venue reader's answer (`ctsd/exchanges/<venue>/`), its parse errors as one
        malformed answer naming `what`."""
        await self.load_markets()
        try:
            return await read()
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise malformed(f"{self.target.exchange} {what} ({exc!r})") from exc

    # --- lifecycle -----------------------------------------------------------------------------

    async def close(self) -> None:
        """Release the ccxt instance (the HTTP session and markets are the factory's)."""
        if not self._closed:
            self._closed = True
            await self._exchange.close()
