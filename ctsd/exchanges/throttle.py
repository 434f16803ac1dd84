"""Every ccxt request of a client passes this gate: budget first, usage and refusals after.

ccxt funnels each REST call through `fetch2(path, api, method, params,
config)`; `install` wraps it on the instance. With ccxt's `enableRateLimit`
off, `fetch2` skips ccxt's own throttle, and our wrapper does what it would
have done — `calculate_rate_limiter_cost`, ccxt's per-endpoint cost — then
waits for our limiter with that cost and the endpoint's lane. `on_rest_response`,
which ccxt calls with every answer's status and headers before raising for it,
is wrapped too, so the gate sees the headers of *this* request (a context
variable per call: one instance may run several requests at once).

After the answer, declared usage headers correct the buckets (another
process on the same IP or key is invisible otherwise), and a refusal for
rate (429/418, Bybit's 10006, OKX's 50011, …) pauses the scopes it concerns
for Retry-After, so no connection sharing them keeps knocking.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ctsd import fencing
from ctsd.errors import ConfigurationError, FailureClass
from ctsd.exchanges import ccxt_internals
from ctsd.exchanges.ccxt_errors import classify, error_codes, note_answer
from ctsd.exchanges.profile import SigningWindow
from ctsd.exchanges.spec import Charge, ExchangeSpec, RateLimitScope, UsageHeader
from ctsd.ratelimit import (
    Bucket,
    BucketSpec,
    Demand,
    Lane,
    Limiter,
    MeterKind,
    Permit,
    RateLimitOverrides,
    ScopeKey,
    ScopeUsage,
)


@dataclass
class ResponseInfo:
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = ""
    url: str = ""

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


_RESPONSE: ContextVar[ResponseInfo | None] = ContextVar("ctsd_exchange_response", default=None)
_LANE: ContextVar[Lane | None] = ContextVar("ctsd_exchange_lane", default=None)


@contextlib.contextmanager
def lane(value: Lane) -> Iterator[None]:
    """Requests made inside the block use `value` unless their endpoint forces another."""
    token = _LANE.set(value)
    try:
        yield
    finally:
        _LANE.reset(token)


TESTNET_SUFFIX = "-testnet"
"""Testnet scopes are labelled `<exchange>-testnet`: the same limits, other buckets."""


def bucket_spec(spec: ExchangeSpec, name: str, overrides: RateLimitOverrides) -> BucketSpec:
    """Limit `name` of `spec` as the limiter enforces it: the exchange's default, overridden."""
    limit = spec.rate_limit(name)
    kind = MeterKind.DECAYING if limit.decaying else MeterKind.WINDOW
    return overrides.apply(spec.id, name, BucketSpec(limit.limit, limit.interval_s, kind))


def exchange_of(key: ScopeKey) -> str:
    """The exchange id a bucket key was made for (testnet or not)."""
    return key.exchange.removesuffix(TESTNET_SUFFIX)


@dataclass(frozen=True)
class AccountScope:
    """Whom a client's account limits count for: its key, or the key's account (UID).

    `fingerprint` and `hint` are the key's (a keyed hash and a masked hint: nothing
    that leaks). `uid` is set once the key's account is known on a venue that counts
    per UID (Bybit, OKX): its buckets are then the UID's, shared by every key of it,
    and show the UID, which is no secret.
    """

    fingerprint: str
    hint: str
    uid: str | None = None

    def key(self, exchange: str, limit: str) -> ScopeKey:
        """The bucket key of account limit `limit` on `exchange` (a scope label)."""
        if self.uid is None:
            return ScopeKey.account(exchange, limit, self.fingerprint, self.hint)
        return ScopeKey.uid(exchange, limit, self.uid)


def hand_over(limiter: Limiter, spec: ExchangeSpec, overrides: RateLimitOverrides,
              key: AccountScope, account: AccountScope) -> None:
    """Charge `account`'s buckets with what `key`'s counted in their current windows.

    Called once, when a key's UID is learned: the exchange has counted the key's
    requests for the UID all along, and a UID bucket starting empty would let the
    UID's keys together send twice its limit within the first window. Charged as
    of now (`Bucket.add_usage`), which holds them a little longer than the exchange.
    """
    for old in limiter.buckets():
        used = old.snapshot().used
        if used <= 0 or exchange_of(old.key) != spec.id or old.key != key.key(
                old.key.exchange, old.key.limit):
            continue
        new = limiter.bucket(account.key(old.key.exchange, old.key.limit),
                             bucket_spec(spec, old.key.limit, overrides))
        new.add_usage(used)


class KeySequence:
    """One key's request order, shared by every client of the key (see `sequential_apis`).

    `lock` is held from taking budget to the answer, so requests are counted when they
    leave and leave in nonce order; `next_nonce` never repeats, even within a millisecond.
    """

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self.lock = asyncio.Lock()
        self._wall_clock = wall_clock
        self._last = 0

    def next_nonce(self) -> int:
        self._last = max(int(self._wall_clock() * 1000), self._last + 1)
        return self._last


@dataclass(frozen=True)
class Admission:
    charged: tuple[tuple[Charge, Bucket], ...]
    permit: Permit | None


class RequestGate:
    """One client's view of the limiter: endpoint → buckets and weights, answer → feedback."""

    def __init__(
        self, limiter: Limiter, spec: ExchangeSpec,
        overrides: RateLimitOverrides | Callable[[], RateLimitOverrides], *,
        testnet: bool = False, host: str = "",
        account: AccountScope | Callable[[], AccountScope] | None = None,
        default_lane: Lane = Lane.POLL, sequence: KeySequence | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._limiter = limiter
        self._spec = spec
        # A callable gives the factory's current overrides: a SIGHUP may replace them
        # while this gate lives, and buckets it creates later must use the new ones.
        self._overrides = overrides if callable(overrides) else lambda: overrides
        self._label = f"{spec.id}{TESTNET_SUFFIX}" if testnet else spec.id
        self._host = host
        # A callable gives the key's current scope: it turns to the UID's when a client
        # of the key learns it, and this gate's next requests follow (see `bucket`).
        self._account: Callable[[], AccountScope | None] = (
            account if callable(account) else lambda: account)
        self._scope = self._account()
        self._default_lane = default_lane
        self._wall_clock = wall_clock
        self.sequence = sequence
        self._sequential = spec.client.sequential_apis if spec.client else ()
        self._buckets: dict[str, Bucket | None] = {}
        self.waited_s = 0.0
        self.requests = 0

    def bucket(self, name: str) -> Bucket | None:
        """The bucket of limit `name` for this client; None for an account limit without a key."""
        scope = self._account()
        if scope != self._scope:  # the key's UID became known: its buckets from now on
            self._scope, self._buckets = scope, {}
        if name not in self._buckets:
            self._buckets[name] = self._make_bucket(name)
        return self._buckets[name]

    def _make_bucket(self, name: str) -> Bucket | None:
        limit = self._spec.rate_limit(name)
        if limit.scope is RateLimitScope.IP:
            key = ScopeKey.ip(self._label, name, self._host)
        elif self._scope is None:
            return None
        else:
            key = self._scope.key(self._label, name)
        return self._limiter.bucket(key, bucket_spec(self._spec, name, self._overrides()))

    async def admit(self, api: str, method: str, path: str, cost: float) -> Admission:
        rule = self._spec.rule_for(api, method, path)
        if rule is None:
            raise ConfigurationError(
                f"{self._spec.id}: no rate-limit rule matches {method} {api} {path}")
        charged = tuple((c, b) for c in rule.charges if (b := self.bucket(c.limit)) is not None)
        self.requests += 1
        if not charged:
            return Admission((), None)
        chosen = rule.lane if rule.lane is not None else _LANE.get()
        if chosen is None:
            chosen = self._default_lane  # (Lane.ORDER is 0: never test lanes for truth)
        permit = await self._limiter.acquire(
            [Demand(bucket, charge.weight(cost)) for charge, bucket in charged], chosen)
        self.waited_s += permit.waited_s
        return Admission(charged, permit)

    def usage(self) -> list[ScopeUsage]:
        """The scopes this client has counted in so far, for per-connection health."""
        return [b.snapshot() for b in self._buckets.values() if b is not None]

    def sequenced(self, api: str) -> contextlib.AbstractAsyncContextManager[object]:
        """Held around a request that must not overlap others of the same key."""
        if self.sequence is not None and api in self._sequential:
            return self.sequence.lock
        return contextlib.nullcontext()

    def windowed(self, exchange: Any, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """`params` with the venue's validity window ending at the fence's deadline, for
        a fenced request that changes something on a venue that takes such a window."""
        window = self._spec.client.request_window if self._spec.client else None
        deadline = fencing.deadline_ms()
        if window is None or deadline is None or method.upper() not in window.methods:
            return params
        remaining = deadline - int(self._wall_clock() * 1000)
        return window.bounded(params, ccxt_internals.venue_timestamp_ms(exchange), remaining)

    @property
    def signing_window(self) -> SigningWindow | None:
        return self._spec.client.signing_window if self._spec.client else None

    def signing_options(self, method: str, options: Mapping[str, Any],
                        ) -> dict[str, Any] | None:
        """ccxt's options to sign a fenced request that changes something with, on a venue
        whose ccxt class signs the window from its options; None: its usual ones."""
        window = self.signing_window
        deadline = fencing.deadline_ms()
        if window is None or deadline is None or method.upper() not in window.methods:
            return None
        return window.bounded(options, deadline - int(self._wall_clock() * 1000))

    def after(self, admission: Admission, info: ResponseInfo, error: BaseException | None) -> None:
        """Read usage headers from any answer; pause scopes after a refusal for rate."""
        for charge, bucket in admission.charged:
            if charge.usage is not None:
                _observe(bucket, charge.usage, info)
        if error is not None and self._refused(info, error):
            self._pause(admission, info, error_codes(str(error)))

    def _refused(self, info: ResponseInfo, error: BaseException) -> bool:
        if info.status in (418, 429):
            return True
        profile = self._spec.client
        found = classify(error, profile.error_codes if profile else {})
        return found is not None and found[0] is FailureClass.RATE_LIMITED

    def _pause(self, admission: Admission, info: ResponseInfo, codes: list[str]) -> None:
        profile = self._spec.client
        rule = next((r for r in (profile.refusals if profile else ())
                     if r.matches(info.status, codes)), None)
        announced = rule.pause_s if rule is not None and rule.pause_s is not None else (
            self._announced_pause(info))
        paused: set[int] = set()
        for charge, bucket in admission.charged:
            scope = self._spec.rate_limit(charge.limit).scope
            if id(bucket) in paused or (
                    rule is not None and rule.scope is not None and rule.scope is not scope):
                continue
            paused.add(id(bucket))
            bucket.pause(announced if announced is not None else bucket.spec.interval_s)

    def _announced_pause(self, info: ResponseInfo) -> float | None:
        retry_after = info.header("Retry-After")
        if retry_after is not None:
            with contextlib.suppress(ValueError):
                return max(float(retry_after), 0.0)
        profile = self._spec.client
        reset = info.header(profile.reset_header) if profile and profile.reset_header else None
        if reset is not None:
            with contextlib.suppress(ValueError):
                return max(float(reset) / 1000 - self._wall_clock(), 0.0)
        return None


def _observe(bucket: Bucket, usage: UsageHeader, info: ResponseInfo) -> None:
    def number(name: str | None) -> float | None:
        raw = info.header(name) if name else None
        try:
            value = float(raw) if raw is not None else None
        except ValueError:
            return None
        return value if value is not None and math.isfinite(value) else None

    used, remaining, limit = number(usage.used), number(usage.remaining), number(usage.limit)
    if limit is not None:
        bucket.observe_limit(limit)
    if used is None and remaining is not None and limit is not None:
        used = limit - remaining
    if used is not None:
        bucket.observe_usage(used)


def install(exchange: Any, gate: RequestGate) -> None:
    """Route every request of the ccxt instance `exchange` through `gate`."""

    def around(original_fetch2: ccxt_internals.Fetch2) -> ccxt_internals.Fetch2:
        async def fetch2(path: Any, api: Any = "public", method: str = "GET",
                         params: Any = None, config: Any = None) -> Any:
            params = {} if params is None else params
            config = {} if config is None else config
            api_name = api if isinstance(api, str) else str(api[0])
            cost = ccxt_internals.request_cost(exchange, api, method, path, params, config)
            async with gate.sequenced(api_name):
                admission = await gate.admit(api_name, method, str(path), cost)
                info = ResponseInfo()
                token = _RESPONSE.set(info)
                try:
                    # The last moment before the request leaves: a fleet engine whose
                    # lease is not in time sends nothing (ctsd.fencing).
                    fencing.check()
                    params = gate.windowed(exchange, method, params)
                    result = await original_fetch2(path, api, method, params, config)
                except Exception as exc:
                    note_answer(exc, info.method, info.url, info.status)
                    gate.after(admission, info, exc)
                    raise
                finally:
                    _RESPONSE.reset(token)
                    if admission.permit is not None:
                        admission.permit.land()  # answered, failed or cancelled: it has left
                gate.after(admission, info, None)
                return result

        return fetch2

    def observe(status: int | None, headers: Mapping[str, str], method: str,
                url: str) -> None:
        info = _RESPONSE.get()
        if info is not None:
            info.status, info.headers, info.method, info.url = status, headers, method, url

    ccxt_internals.wrap_requests(exchange, around)
    if gate.signing_window is not None:
        ccxt_internals.sign_with_options(exchange, gate.signing_options)
    ccxt_internals.observe_responses(exchange, observe)
    if gate.sequence is not None:
        ccxt_internals.use_nonce(exchange, gate.sequence.next_nonce)
