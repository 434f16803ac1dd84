"""A connection test: each step logs what it found, then one result says what to do.

Steps run in order and stop at the first failure, because every later step
depends on the earlier ones (no balance without a valid signature):

    credentials → markets → clock → balance → permissions → api_type → latency
    → derivatives, margin or options (a connection of that api type)
    → streams (a websocket connection: public ticker data, private login)

`derivatives` compares the account's position mode and margin mode against
the connection's settings. A difference is a warning (what an engine start
will change, and that it needs no open positions or orders), never a failure:
the key works. A margin connection has `margin` and an options connection
`options` in its place (`ctsd.connections.checks.account_steps`): the account of
that market, read.

The permissions step also learns which account (UID) the key belongs to,
where the exchange counts its limits per UID (from the same answer): it is
recorded with the result so every key of that account draws on one rate-limit
budget. Not learning it never fails a test.

The steps run in a task of their own under one deadline, and hand their log
lines to the caller through a queue. That way a deadline never fires inside
the caller's code (as it would with a timeout around an async generator that
is suspended at `yield`), and a caller that stops listening cancels the task:
nothing of a half-run test is kept.

Log lines are built from fixed phrases and numbers. The only outside text
that reaches them is a classified failure message, which is redacted of every
credential value before it is written.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from ctsd.connections.checks.account_steps import margin_step, options_step, permission_lines
from ctsd.connections.checks.probe import (
    Classifier,
    ExchangeProbe,
    ProbeFactory,
    StreamProbe,
)
from ctsd.connections.checks.results import AssetBalance, FailureClass, LogLine, TestResult
from ctsd.connections.checks.run import StepFailed, TestRun
from ctsd.connections.model import Connection, MarketDataMethod, PositionMode
from ctsd.errors import CredentialsUnavailable
from ctsd.exchanges.model import AccountModes, ApiCredentials
from ctsd.exchanges.spec import ApiType
from ctsd.tasks import cancel_and_wait

log = logging.getLogger("ctsd.connections.checks.tester")

TestEvent = LogLine | TestResult


class CredentialSource(Protocol):
    async def resolve(self, conn: Connection) -> ApiCredentials:
        """The connection's unsealed credentials; CredentialsUnavailable if it has none."""
        ...


@dataclass(frozen=True)
class ConnectionTesterSettings:
    quote_currency: str = "USDT"
    timeout_s: float = 30.0
    skew_warn_s: float = 1.0
    latency_warn_s: float = 1.0
    latency_samples: int = 3
    stream_wait_s: float = 10.0
    """How long the streams step waits for first data, or for the login to settle."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class ConnectionTester:
    """Runs the steps of a test against one connection's exchange account."""

    def __init__(
        self,
        resolver: CredentialSource,
        open_probe: ProbeFactory,
        classify: Classifier,
        settings: ConnectionTesterSettings | None = None,
        now: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        on_result: Callable[[TestResult], None] | None = None,
        streams: StreamProbe | None = None,
    ) -> None:
        self._resolver = resolver
        self._streams = streams
        self._on_result = on_result
        """Sees every result, single or batch (e.g. the daemon's metrics); None when unused."""
        self._open_probe = open_probe
        self._classify = classify
        self.settings = settings or ConnectionTesterSettings()
        self._now = now
        self._monotonic = monotonic

    async def run(
        self, conn: Connection, credentials: ApiCredentials | None = None
    ) -> AsyncGenerator[TestEvent, None]:
        """Log lines as the steps run, then the result; stopping early cancels the test."""
        queue: asyncio.Queue[TestEvent] = asyncio.Queue()
        task = asyncio.create_task(self._execute(conn, credentials, queue.put_nowait))
        try:
            while True:
                event = await queue.get()
                yield event
                if isinstance(event, TestResult):
                    return
        finally:
            await cancel_and_wait(task)

    async def test(
        self, conn: Connection, credentials: ApiCredentials | None = None
    ) -> tuple[TestResult, float]:
        """The result alone, and the time its requests waited for rate-limit budget."""
        run = TestRun(conn, self._now, self._monotonic, self._classify, lambda _line: None)
        await self._guarded(run, credentials)
        return self._observed(run.result()), run.limiter_wait_s()

    async def _execute(
        self,
        conn: Connection,
        credentials: ApiCredentials | None,
        emit: Callable[[TestEvent], None],
    ) -> None:
        run = TestRun(conn, self._now, self._monotonic, self._classify, emit)
        await self._guarded(run, credentials)
        emit(self._observed(run.result()))

    def _observed(self, result: TestResult) -> TestResult:
        if self._on_result is not None:
            self._on_result(result)
        return result

    async def _guarded(self, run: TestRun, credentials: ApiCredentials | None) -> None:
        """Runs the steps under the deadline; every way out leaves a failure on `run`."""
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                await self._steps(run, credentials)
        except StepFailed:
            pass
        except TimeoutError:
            run.fail(
                FailureClass.TIMEOUT,
                f"the test did not finish within {self.settings.timeout_s:g} s",
            )
        except Exception as exc:  # e.g. from opening the probe, outside any step's call
            classified = self._classify(exc)
            if not classified.expected:
                log.error(
                    "connection test crashed", exc_info=exc, extra={"connection": run.conn.id}
                )
            run.fail(classified.failure_class, run.clean(classified.message))

    async def _steps(self, run: TestRun, credentials: ApiCredentials | None) -> None:
        creds = credentials or await self._credentials(run)
        run.redact(creds.values())
        run.step = "markets"  # opening the client is the first thing loading markets needs
        async with self._open_probe(run.conn, creds) as probe:
            run.probe = probe
            await self._markets(run, probe)
            await self._clock(run, probe)
            await self._balance(run, probe)
            await self._permissions(run, probe)
            await self._api_type(run, probe)
            await self._latency(run, probe)
            if run.conn.api_type is ApiType.PERPETUAL_FUTURES:
                await self._derivatives(run, probe)
            elif run.conn.api_type is ApiType.MARGIN:
                await margin_step(run, probe)
            elif run.conn.api_type is ApiType.OPTIONS:
                await options_step(run, probe)
        if self._streams is not None and run.conn.market_data_method is (
                MarketDataMethod.WEBSOCKET):
            await self._stream_steps(run, self._streams, creds)

    async def _stream_steps(self, run: TestRun, streams: StreamProbe,
                            creds: ApiCredentials) -> None:
        """Engines on a websocket connection stream public data and, LIVE, private order
        updates: a refused subscription, a stream limit or a refused login fails here,
        named, instead of an engine stalling later."""
        run.step = "streams"
        within = self.settings.stream_wait_s
        async with run.calling():
            run.info(f"public stream: {await streams.public(run.conn, within)}")
        async with run.calling():
            run.info(f"private stream: {await streams.private(run.conn, creds, within)}")

    async def _credentials(self, run: TestRun) -> ApiCredentials:
        run.step = "credentials"
        try:
            creds = await self._resolver.resolve(run.conn)
        except CredentialsUnavailable as exc:
            run.fail(FailureClass.AUTHENTICATION, exc.message, "re-enter the credentials")
            raise StepFailed from exc
        info = run.conn.credentials
        passphrase = "passphrase set" if creds.passphrase else "no passphrase"
        run.info(f"credentials unsealed: API key {info.api_key_hint}, secret set, {passphrase}")
        return creds

    async def _markets(self, run: TestRun, probe: ExchangeProbe) -> None:
        run.step = "markets"
        started = self._monotonic()
        async with run.calling():
            count = await probe.load_markets()
        api_type = run.conn.api_type.value.replace("_", " ")
        if count == 0:
            run.fail(
                FailureClass.EXCHANGE_ERROR,
                f"{run.conn.exchange} lists no {api_type} markets",
                "check the api type and testnet setting of the connection",
            )
            raise StepFailed
        run.info(f"{count} {api_type} markets loaded in {self._ms(started)} ms")

    async def _clock(self, run: TestRun, probe: ExchangeProbe) -> None:
        run.step = "clock"
        async with run.calling():
            measured = await probe.server_time()
        skew_s = measured.skew_ms / 1000
        run.clock_skew_s = skew_s
        side = "ahead of" if skew_s >= 0 else "behind"
        text = f"exchange clock is {abs(skew_s):.3f} s {side} this host"
        if abs(skew_s) > self.settings.skew_warn_s:
            run.warn(
                f"{text}: signed requests fail beyond the exchange's receive window",
                "synchronise the host clock (NTP)",
            )
        else:
            run.info(f"{text} (round trip {measured.round_trip_ms:.0f} ms)")

    async def _balance(self, run: TestRun, probe: ExchangeProbe) -> None:
        run.step = "balance"
        async with run.calling():
            holdings = [h for h in await probe.fetch_holdings() if h.total > 0]
        quote = self.settings.quote_currency
        prices = await self._prices(run, probe, [h.asset for h in holdings if h.asset != quote])
        balances = []
        for h in holdings:
            price = Decimal(1) if h.asset == quote else prices.get(h.asset, Decimal(0))
            balances.append(
                AssetBalance(
                    h.asset, float(h.free), float(h.used), float(h.total), float(h.total * price)
                )
            )
        run.balances = tuple(sorted(balances, key=lambda b: (-b.value, b.asset)))
        run.balance_total = sum(b.value for b in balances)
        run.balance_currency = quote
        unpriced = sum(1 for b in balances if b.value == 0)
        suffix = f" ({unpriced} without a {quote} price)" if unpriced else ""
        run.info(
            f"signed request accepted: {len(balances)} assets, "
            f"total {run.balance_total:,.2f} {quote}{suffix}"
        )

    async def _prices(
        self, run: TestRun, probe: ExchangeProbe, assets: Sequence[str]
    ) -> dict[str, Decimal]:
        if not assets:
            return {}
        try:
            return await probe.prices(assets, self.settings.quote_currency)
        except Exception as exc:
            run.debug(f"balances not valued: {run.describe(exc)}")
            return {}

    async def _permissions(self, run: TestRun, probe: ExchangeProbe) -> None:
        run.step = "permissions"
        async with run.calling():
            permissions = await probe.key_permissions()
        account = await self._account(run, probe)
        if permissions is None:
            run.capabilities = ("read",)
            run.info(f"{run.conn.exchange} does not report key permissions; not checked{account}")
            return
        granted = [
            name
            for name, allowed in (
                ("read", permissions.read),
                ("trade", permissions.trade),
                ("withdraw", permissions.withdraw),
            )
            if allowed
        ]
        granted += permission_lines(run, permissions)
        run.capabilities = tuple(granted)
        run.info(f"key permissions: {', '.join(granted) or 'none'}{account}")
        if not permissions.trade:
            run.warn(
                "the key cannot trade: engines on this connection could not place orders",
                "enable trading on the key if it is meant to trade",
            )
        if permissions.withdraw:
            run.warn(
                "withdrawals are enabled on this key: a trading key should not be able to "
                "move funds out",
                "disable withdrawals on the key",
            )

    async def _account(self, run: TestRun, probe: ExchangeProbe) -> str:
        """Learns the key's account UID onto `run`; what the permissions line says of it."""
        try:
            uid = await probe.account_uid()  # the permissions' answer: no request of its own
        except Exception as exc:  # counted per key meanwhile: not worth failing the test
            return f"; account uid unknown ({run.describe(exc)}), limits counted per key"
        if uid is None:
            return ""
        run.account_uid = uid
        # masked like key hints: the uid is no secret, but a log travels further
        return f"; account uid ****{uid[-4:]}"

    async def _api_type(self, run: TestRun, probe: ExchangeProbe) -> None:
        run.step = "api_type"
        async with run.calling():
            status = await probe.api_type_status()
        if not status.usable:
            run.fail(
                FailureClass.PERMISSION,
                status.detail,
                "enable this market on the account, or change the connection's api type",
            )
            raise StepFailed
        run.info(status.detail)

    async def _latency(self, run: TestRun, probe: ExchangeProbe) -> None:
        run.step = "latency"
        samples = []
        for _ in range(max(1, self.settings.latency_samples)):
            waited_before = probe.limiter_wait_s()
            async with run.calling():
                round_trip = await probe.ping()
            waited = probe.limiter_wait_s() - waited_before
            samples.append(max(0.0, round_trip - waited))  # the network's time, not our queue's
            if waited > 0:
                break  # the budget is tight: do not spend more of it on samples
        run.latency_s = statistics.median(samples)
        text = f"round trip {run.latency_s * 1000:.0f} ms (median of {len(samples)})"
        if run.latency_s > self.settings.latency_warn_s:
            run.warn(f"{text}: slow", "check the network path to the exchange")
        else:
            run.info(text)

    async def _derivatives(self, run: TestRun, probe: ExchangeProbe) -> None:
        run.step = "derivatives"
        try:
            modes = await probe.account_modes()
        except Exception as exc:  # the key works; an engine start sets the modes anyway
            run.warn(f"the account's position and margin modes could not be read "
                     f"({run.describe(exc)}); an engine start sets them",
                     "check the key may read the futures account")
            return
        if modes is None:
            run.info(f"{run.conn.exchange} reports no perpetuals account modes here")
            return
        changes = _position_mode_change(run, modes) + _margin_mode_change(run, modes)
        if changes:
            run.warn(f"the account differs from the connection: {'; '.join(changes)}",
                     "an engine start sets what the connection says (the venue refuses while "
                     "positions or orders are open on a symbol); or change the connection's "
                     "position_mode / margin_mode to match the account")

    def _ms(self, started: float) -> int:
        return round((self._monotonic() - started) * 1000)


def _position_mode_change(run: TestRun, modes: AccountModes) -> list[str]:
    wanted = "hedge" if run.conn.position_mode is PositionMode.HEDGE else "one-way"
    if modes.hedge is None:
        run.info(f"{run.conn.exchange} keeps the position mode per symbol: an engine start sets "
                 f"{wanted} for each of its symbols")
        return []
    found = "hedge" if modes.hedge else "one-way"
    if found == wanted:
        run.info(f"position mode {found}, as the connection says")
        return []
    return [f"position mode is {found}; an engine start switches it to {wanted}"]


def _margin_mode_change(run: TestRun, modes: AccountModes) -> list[str]:
    wanted = run.conn.margin_mode.value
    if not modes.margin_modes:
        run.info(f"{run.conn.exchange} takes the margin mode with every order: engines send "
                 f"{wanted}")
        return []
    if modes.margin_modes[0][0] == "*":
        found = modes.margin_modes[0][1]
        if found == wanted:
            run.info(f"margin mode {found}, as the connection says")
            return []
        return [f"margin mode is {found}; an engine start switches it to {wanted}"]
    other = [symbol for symbol, mode in modes.margin_modes if mode != wanted]
    if not other:
        run.info(f"margin mode {wanted} on every symbol, as the connection says")
        return []
    shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
    return [f"{len(other)} symbols are not {wanted} ({shown}); an engine start switches its "
            f"symbols to {wanted}"]
