"""`ExchangeClientFactory`: builds clients, and owns what they share.

Shared, per factory: the rate limiter's buckets (through one `RateLimiter`),
one aiohttp session (connection pooling instead of a pool per connection),
one `MarketCache` per (exchange, api type, testnet), and the account UIDs
clients have learned for their keys (so every key of a Bybit or OKX account
draws on that account's buckets). ccxt is imported on
the first `client()` call, not before: importing it takes half a second and
~100 MB, which the daemon's start path and `ctsd --help` must not pay.

`exchanges` holds the `[exchanges.<id>]` settings: a `base_url` replaces
the scheme and host of every URL of that exchange's clients (the simulator
in tests, benchmarks and the demo).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from ctsd.clock import SystemClock
from ctsd.errors import InvalidArgument
from ctsd.exchanges import ccxt_internals
from ctsd.exchanges.ccxt_errors import translated
from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.markets import MarketCache
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.exchanges.order_stream import OrderStream
from ctsd.exchanges.profile import ClientProfile
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.exchanges.settings import ExchangeSettings
from ctsd.exchanges.spec import ExchangeSpec
from ctsd.exchanges.streams import (
    SHARD_OPTIONS,
    ConnectionPacers,
    MarketStream,
    stream_limits,
)
from ctsd.exchanges.throttle import (
    AccountScope,
    KeySequence,
    RequestGate,
    bucket_spec,
    exchange_of,
    hand_over,
    install,
)
from ctsd.ratelimit import (
    BucketSpec,
    Lane,
    LimitChange,
    Limiter,
    RateLimitOverrides,
    ScopeKey,
    ScopeUsage,
)
from ctsd.tasks import AsyncClosing

CONNECT_MARGIN_S = 0.5
"""Added to each venue's new-connection window (`ConnectionPacers`)."""
log = logging.getLogger("ctsd.ratelimit")


def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ccxt option dicts, later layers winning."""
    result: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(result.get(key), dict):
                result[key] = _merge(result[key], value)
            elif isinstance(value, Mapping):
                result[key] = _merge(value)
            else:
                result[key] = value
    return result


class ExchangeClientFactory(AsyncClosing):
    def __init__(
        self, limiter: Limiter, registry: ExchangeRegistry | None = None, *,
        overrides: RateLimitOverrides | None = None,
        exchanges: Mapping[str, ExchangeSettings] | None = None,
        timeout_s: float = 10.0, market_refresh_s: float = 3600.0, price_ttl_s: float = 5.0,
        account_key: bytes | None = None,
    ) -> None:
        """`account_key` keys the fingerprints naming account scopes: a fleet's members
        share one (`ctsd.wiring.fleet`); alone, the process draws its own."""
        self.limiter = limiter
        self.registry = registry or ExchangeRegistry.default()
        self._overrides = overrides or RateLimitOverrides()
        self._settings = MappingProxyType(dict(exchanges or {}))
        self._timeout_ms = int(timeout_s * 1000)
        self._refresh_s = market_refresh_s
        self._price_ttl_s = price_ttl_s
        self._fingerprint_key = account_key or os.urandom(32)
        self._session: Any = None
        self._ssl: ssl.SSLContext | None = None
        self._markets: dict[ConnectionTarget, MarketCache] = {}
        self._sequences: dict[tuple[str, str], KeySequence] = {}
        self._uids: dict[str, str] = {}
        """Key fingerprint → the UID of its account, as a client of the key learned it."""
        self._markets_lock = asyncio.Lock()
        self._closed = False
        self._pacers: ConnectionPacers | None = None

    @property
    def connection_pacers(self) -> ConnectionPacers:
        """The pacing of every WebSocket this daemon opens, per venue (the market-data hub
        shares it); built on first use, like the streams themselves."""
        if self._pacers is None:
            self._pacers = ConnectionPacers(SystemClock(), margin_s=CONNECT_MARGIN_S)
        return self._pacers

    # --- clients ---------------------------------------------------------------------------

    async def client(
        self, target: ConnectionTarget, credentials: ApiCredentials | None = None, *,
        lane: Lane = Lane.POLL, account_uid: str | None = None,
    ) -> ExchangeClient:
        """A client for `target`, signing with `credentials`; its requests default to `lane`.

        `account_uid` is the key's account as a past test stored it (`Connection.
        account_uid`): where the venue counts per UID, account limits are the UID's
        from the first request. A UID learned in this process for the key wins.
        """
        spec, profile = self._resolve(target)
        markets = await self.markets(target)
        key = None if credentials is None else self._account(spec, credentials)
        account = None if key is None else self._scope_of(profile, key, account_uid)
        gate = self._gate(spec, target, account, lane)
        if key is not None and profile.sequential_apis:
            gate.sequence = self._sequences.setdefault((spec.id, key.fingerprint),
                                                       KeySequence())
        learned = None if key is None else partial(self._learn_uid, spec, key)
        exchange = self._new_exchange(spec, profile, target, credentials, gate)
        return ExchangeClient(exchange, target, profile, markets, gate, credentials, lane,
                              on_account_uid=learned)

    async def markets(self, target: ConnectionTarget) -> MarketCache:
        """The shared market cache of `target` (created, not yet loaded, on first use)."""
        spec, profile = self._resolve(target)
        await ccxt_internals.load()
        async with self._markets_lock:
            cache = self._markets.get(target)
            if cache is None:
                gate = self._gate(spec, target, None, Lane.POLL)
                source = self._new_exchange(spec, profile, target, None, gate)
                cache = MarketCache(target, source, self._translator(spec, profile),
                                    refresh_s=self._refresh_s, price_ttl_s=self._price_ttl_s)
                self._markets[target] = cache
        return cache

    async def market_stream(self, target: ConnectionTarget) -> MarketStream:
        """A new ccxt.pro instance (one shard of the hub) for `target`'s public streams, on
        the shared markets; the REST snapshots it takes (order books) pass the limiter."""
        spec, profile = self._resolve(target)
        markets = await self.markets(target)
        await markets.ensure()
        await ccxt_internals.load(pro=True)
        gate = self._gate(spec, target, None, Lane.POLL)
        exchange = self._new_exchange(spec, profile, target, None, gate, pro=True)
        markets.share_with(exchange, 0)
        return MarketStream(exchange, target, self._translator(spec, profile),
                            stream_limits(spec.id), SystemClock())

    async def order_stream(self, target: ConnectionTarget, credentials: ApiCredentials,
                           account_uid: str | None = None) -> OrderStream:
        """A LIVE connection's private order stream; its REST calls (listenKey, tokens)
        wait in the ORDER lane of the key's buckets."""
        spec, profile = self._resolve(target)
        markets = await self.markets(target)
        await markets.ensure()
        await ccxt_internals.load(pro=True)
        key = self._account(spec, credentials)
        gate = self._gate(spec, target, self._scope_of(profile, key, account_uid), Lane.ORDER)
        exchange = self._new_exchange(spec, profile, target, credentials, gate, pro=True)
        # Paced at each dial, ccxt.pro's own redials after a venue closed a socket included.
        ccxt_internals.pace_opens(exchange, self.connection_pacers.pacer(spec.id).wait)
        markets.share_with(exchange, 0)
        return OrderStream(exchange, target, self._translator(spec, profile,
                                                              credentials.values()),
                           per_trade_fees=profile.per_trade_fees,
                           filled_field=profile.stream_filled_field)

    @staticmethod
    def _translator(spec: ExchangeSpec, profile: ClientProfile,
                    secrets: tuple[str, ...] = ()) -> Any:
        async def translate(call: Any) -> Any:
            with translated(spec.id, secrets=secrets, codes=profile.error_codes,
                            unsupported=profile.unsupported_codes):
                return await call()

        return translate

    def _resolve(self, target: ConnectionTarget) -> tuple[ExchangeSpec, ClientProfile]:
        if self._closed:
            raise RuntimeError("exchange client factory is closed")
        spec = self.registry.get(target.exchange)
        if spec is None or spec.client is None:
            raise InvalidArgument.field("exchange", f"{target.exchange!r} is not supported")
        if not spec.offers(target.api_type) or target.api_type not in spec.client.api_types:
            raise InvalidArgument.field(
                "api_type", f"{spec.id} does not offer {target.api_type.value}")
        if target.testnet and not spec.testnet_supported:
            raise InvalidArgument.field("testnet", f"{spec.id} has no testnet")
        return spec, spec.client

    def _account(self, spec: ExchangeSpec, credentials: ApiCredentials) -> AccountScope:
        """A keyed hash of the key (see `__init__`): equal keys share buckets, nothing leaks."""
        digest = hmac.new(self._fingerprint_key, f"{spec.id}\0{credentials.api_key}".encode(),
                          hashlib.sha256).hexdigest()[:16]
        return AccountScope(digest, credentials.hint)

    def _learn_uid(self, spec: ExchangeSpec, key: AccountScope, uid: str) -> None:
        """A client of `key` learned its account's UID: from now on the key's clients,
        open ones included, count account limits in the UID's buckets."""
        if self._uids.get(key.fingerprint) != uid:
            self._uids[key.fingerprint] = uid
            hand_over(self.limiter, spec, self._overrides, key, replace(key, uid=uid))

    def _scope_of(self, profile: ClientProfile, key: AccountScope, stored_uid: str | None,
                  ) -> AccountScope | Callable[[], AccountScope]:
        """The key's scope, turning to its account's UID where the venue counts per UID.

        Asked again by the gate as it takes buckets, so a UID learned by any client of
        the key (a connection test) moves open clients too (an engine's).
        """
        if profile.account_uid is None:
            return key  # Binance orders per account key, Kraken's counter per key

        def current() -> AccountScope:
            uid = self._uids.get(key.fingerprint) or stored_uid
            return key if uid is None else replace(key, uid=uid)

        return current

    def _gate(self, spec: ExchangeSpec, target: ConnectionTarget,
              account: AccountScope | Callable[[], AccountScope] | None,
              lane: Lane) -> RequestGate:
        base_url = self._settings_of(spec.id).base_url
        host = urlsplit(base_url).netloc if base_url else ""
        return RequestGate(self.limiter, spec, lambda: self._overrides,
                           testnet=target.testnet, host=host, account=account, default_lane=lane)

    def _new_exchange(
        self, spec: ExchangeSpec, profile: ClientProfile, target: ConnectionTarget,
        credentials: ApiCredentials | None, gate: RequestGate, *, pro: bool = False,
    ) -> Any:
        api = profile.api_types[target.api_type]
        options = _merge(profile.options, api.options,
                         {"fetchMarkets": {"types": list(api.market_types)}},
                         SHARD_OPTIONS.get(spec.id, {}) if pro else {})
        config: dict[str, Any] = {
            "enableRateLimit": False,  # ours is the only limiter (see ctsd.exchanges.throttle)
            "timeout": self._timeout_ms,
            "options": options,
            "session": self._shared_session(),
        }
        if credentials is not None:
            config.update(apiKey=credentials.api_key, secret=credentials.secret)
            if credentials.passphrase:
                config["password"] = credentials.passphrase
        exchange = ccxt_internals.exchange_class(profile.ccxt_class, pro=pro)(config)
        ccxt_internals.check_internals(exchange)
        if pro:
            ccxt_internals.own_timers(exchange)
        ccxt_internals.share_transport(exchange, self._ssl_context())
        if target.testnet:
            exchange.set_sandbox_mode(True)
        settings = self._settings_of(spec.id)
        if settings.base_url:
            ccxt_internals.rebase_urls(exchange, settings.rewrite)
        install(exchange, gate)
        return exchange

    def _settings_of(self, exchange: str) -> ExchangeSettings:
        return self._settings.get(exchange) or ExchangeSettings()

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            import certifi

            self._ssl = ssl.create_default_context(cafile=certifi.where())
        return self._ssl

    def _shared_session(self) -> Any:
        if self._session is None:
            import aiohttp

            connector = aiohttp.TCPConnector(ssl=self._ssl_context(),
                                             enable_cleanup_closed=True, limit=200)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    # --- rate limits -----------------------------------------------------------------------

    @property
    def overrides(self) -> RateLimitOverrides:
        return self._overrides

    def relimit(self, overrides: RateLimitOverrides) -> list[LimitChange]:
        """Apply new overrides (a reload) to the buckets in use and to those made later.

        All or nothing: if any bucket's new spec cannot be built, nothing changes.
        Returns the buckets whose limits changed.
        """

        def spec_of(key: ScopeKey) -> BucketSpec:
            spec = self.registry.get(exchange_of(key))
            if spec is None:  # every bucket was made from the registry
                raise KeyError(f"no exchange {exchange_of(key)!r} for {key.label}")
            return bucket_spec(spec, key.limit, overrides)

        changes = self.limiter.relimit(spec_of)
        self._overrides = overrides
        return changes

    def reload_rate_limits(self, overrides: RateLimitOverrides) -> None:
        """A reloaded `[rate_limits]`, for the clients already open too; logs what changed.

        The config loader has validated `overrides` as a whole, so this cannot half
        apply them: `relimit` swaps every bucket's limits or none.
        """
        old = self._overrides
        if overrides == old:
            return
        changes = self.relimit(overrides)
        log.info("rate limits reloaded", extra={
            "settings": "; ".join(overrides.changes_from(old)),
            "scopes": "; ".join(c.describe() for c in changes)})

    def usage(self, exchange: str | None = None) -> list[ScopeUsage]:
        """Every rate-limit scope (of one exchange, or all), for health and metrics."""
        return [u for u in self.limiter.snapshot()
                if exchange is None or u.key.exchange in (exchange, f"{exchange}-testnet")]

    # --- lifecycle -----------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop market refreshes, close the market sources and the shared session.

        Clients must be closed by whoever opened them; a client used after this
        fails with a closed-session error.
        """
        if self._closed:
            return
        self._closed = True
        caches, self._markets = list(self._markets.values()), {}
        await asyncio.gather(*(cache.close() for cache in caches), return_exceptions=True)
        if self._session is not None:
            session, self._session = self._session, None
            with contextlib.suppress(Exception):
                await session.close()


