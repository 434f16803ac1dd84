"""Every exchange fault the simulator injects, while engines run and batch tests stream.

PAPER engines cycle on Binance, Bybit and OKX (`exchange_rig`). Each fault
kind of `ctsd.sim.faults.FaultKind` is aimed at one venue — faults are scoped
by venue (and could be by path and count); here each gets a count large
enough to last until it is cleared `FAULT_S` later — while a batch test of
connections on all three venues is in flight. The venue rotates across the
kinds, so each venue's error translation meets several of them. For each kind:

- the batch yields a result for every item within its deadline: items on the
  faulted venue pass or fail with the class the fault calls for (or TIMEOUT),
  those elsewhere pass; every read RPC made meanwhile answers in time with a
  deliberate code;
- the simulator counts no rate-limit violation;
- the engines of the other venues stay RUNNING throughout (WatchEngines);
- once the fault clears, the affected engine is RUNNING and cycling again
  (the supervisor restarts a FAILED engine after 1, 2, 4 ... s, up to five
  times in a row: `FAULT_S` is short enough never to exhaust that), and a new
  batch test of the venue passes;
- grpc health stays SERVING.

The simulator has no ban fault: "418 ban" is SERVER_ERROR with status 418
(plain body, no Retry-After), which ccxt raises as DDoSProtection. The two
credential faults touch signed requests only, so PAPER engines (public market
data) do not meet them; batch tests do. Without Retry-After the daemon pauses
the refused scope for a whole window of its limit: 60 s on Binance. The quick
form aims it at OKX (2 s windows); the long form (`CTS_SOAK_ROUNDS` > 1) runs
every case that many times and adds, once each, the 418 on Binance and a hang
past ccxt's 10 s request timeout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from cts.v1 import connection_pb2 as cpb
from cts.v1 import engine_service_pb2 as pb
from ctsd.sim.faults import WS_FAULTS, FaultKind
from tests.robustness.exchange_rig import (
    BATCH_DEADLINE_S,
    ENGINE_VENUES,
    PASSED,
    BatchOutcome,
    ExchangeRig,
    exchange_rig,
    state_name,
)
from tests.robustness.tally import Tally, log_problems, soak_rounds

FAULT_S = 1.0
"""How long each fault stays on: one engine cycle (1 s apart) meets it, so one restart, 1 s
after the failure, brings the engine back."""
FAULT_COUNT = 100_000
RECOVERY_S = 45.0
"""Generous: a restart follows a failed cycle after 1 s (2 s if a second cycle met the fault),
and a hung cycle ends when its request is answered."""


@dataclass(frozen=True)
class FaultCase:
    label: str
    kind: FaultKind
    venue: str
    failures: frozenset[str]
    """Failure classes a test on the faulted venue may end with (TIMEOUT is always allowed:
    retries after a refusal may run out of the item's time)."""
    spec: Mapping[str, Any] = field(default_factory=dict)
    fault_s: float = FAULT_S
    recovery_s: float = RECOVERY_S

    def inject(self, rig: ExchangeRig) -> None:
        rig.sim.fault(self.kind.value, venue=self.venue, count=FAULT_COUNT, **self.spec)

    def __str__(self) -> str:
        return f"{self.label}@{self.venue}"


RATE, NETWORK = frozenset({"RATE_LIMITED"}), frozenset({"NETWORK"})
GARBLED = frozenset({"EXCHANGE_ERROR"})
CASES = (
    FaultCase("429+retry-after", FaultKind.RATE_LIMIT, "binance", RATE, {"retry_after_s": 1}),
    FaultCase("418 ban", FaultKind.SERVER_ERROR, "okx", RATE, {"status": 418}),
    FaultCase("502", FaultKind.SERVER_ERROR, "bybit", NETWORK, {"status": 502}),
    FaultCase("html 503", FaultKind.HTML_503, "okx", NETWORK | {"MAINTENANCE"}),
    FaultCase("maintenance", FaultKind.MAINTENANCE, "binance", frozenset({"MAINTENANCE"})),
    FaultCase("latency 1s", FaultKind.LATENCY, "okx", frozenset(), {"delay_s": 1.0}),
    FaultCase("hang 6s", FaultKind.HANG, "bybit", frozenset(), {"delay_s": 6.0}),
    FaultCase("malformed json", FaultKind.MALFORMED_JSON, "binance", GARBLED),
    FaultCase("truncated json", FaultKind.TRUNCATED_JSON, "okx", GARBLED),
    FaultCase("connection reset", FaultKind.CONNECTION_RESET, "bybit", NETWORK),
    FaultCase("invalid key", FaultKind.INVALID_KEY, "binance", frozenset({"AUTHENTICATION"})),
    FaultCase("ip not whitelisted", FaultKind.IP_NOT_WHITELISTED, "okx",
              frozenset({"IP_NOT_ALLOWED"})),
)
LONG_CASES = (
    # No Retry-After: the daemon holds Binance's IP weight scope for a whole window (60 s).
    FaultCase("418 ban", FaultKind.SERVER_ERROR, "binance", RATE, {"status": 418},
              recovery_s=120.0),
    # Past ccxt's 10 s request timeout (the simulator caps a hang at HANG_MAX_S = 15 s).
    FaultCase("hang past timeout", FaultKind.HANG, "binance", frozenset(), {"delay_s": 14.0}),
)
"""Run once each in the long form only: each takes a minute or more."""
ROUNDS = soak_rounds(1)


@pytest.fixture(scope="module")
def rig() -> Iterator[ExchangeRig]:
    with exchange_rig() as made:
        yield made


def _transitions(states: list[int]) -> str:
    return "→".join(state_name(s) for s in states) or "(no report)"


def _check_batch(case: FaultCase, rig: ExchangeRig, names: list[str], outcome: BatchOutcome,
                 tally: Tally, when: str) -> None:
    """One result per item, in time; items off the faulted venue (and all, `after`) pass."""
    if not tally.answer(outcome.code):
        tally.notes.append(f"{when} batch: {outcome.code.name} after {outcome.elapsed_s:.1f} s")
    missing = [n for n in names if n not in outcome.results]
    if missing or outcome.total != len(names):
        tally.lost += 1
        tally.notes.append(f"{when} batch: no result for {missing} (total {outcome.total})")
    for name, item in outcome.results.items():
        tally.tried += 1
        faulted = when == "during" and name in rig.batch_names[case.venue]
        failure = cpb.FailureClass.Name(item.result.failure_class).removeprefix("FAILURE_CLASS_")
        if item.result.status in PASSED or (faulted and failure in case.failures | {"TIMEOUT"}):
            tally.survived += 1
            continue
        tally.lost += 1
        tally.notes.append(f"{when} batch: {name} {failure} {item.result.message!r}")
    faulted_names = rig.batch_names[case.venue]
    tally.notes.append(f"{when} batch {outcome.elapsed_s:.1f} s: {case.venue} items "
                       f"{outcome.classes(faulted_names)}")


def _check_others(case: FaultCase, rig: ExchangeRig, since: float, tally: Tally) -> None:
    until = time.monotonic()
    for venue in ENGINE_VENUES:
        name = rig.engine_of[venue]
        states = rig.watch.states(name, since, until)
        if venue == case.venue:
            tally.notes.append(f"{venue} engine: {_transitions(states)}")
            continue
        tally.tried += 1
        if states and set(states) <= {pb.ENGINE_STATE_RUNNING}:
            tally.survived += 1
        else:
            tally.lost += 1
            tally.notes.append(f"{venue} engine changed state (or went unreported): "
                               f"{_transitions(states)}")


@dataclass(frozen=True)
class FaultWindow:
    """What happened while one fault was on, and how the affected engine came back."""

    hits: int
    cleared_ms: float
    batch: BatchOutcome
    engine: pb.Engine | None
    """The affected engine cycling again after the fault; None if it did not in time."""


def _fault_window(rig: ExchangeRig, case: FaultCase, names: list[str],
                  tally: Tally) -> FaultWindow:
    """Inject, stream a batch and probe for `fault_s`, clear, wait for the engine to cycle."""
    case.inject(rig)
    with ThreadPoolExecutor(1, thread_name_prefix="batch") as pool:
        batch = pool.submit(rig.batch, names)
        deadline = time.monotonic() + case.fault_s
        while time.monotonic() < deadline:
            rig.probe(tally)
            time.sleep(0.1)
        left = rig.pending_faults()
        rig.sim.clear_faults()
        cleared_ms = time.time() * 1000
        engine = rig.wait_cycling(rig.engine_of[case.venue], cleared_ms, case.recovery_s,
                                  tally)
        outcome = batch.result(timeout=BATCH_DEADLINE_S + 10)
    hits = FAULT_COUNT - sum(int(f["count"]) for f in left)
    return FaultWindow(hits, cleared_ms, outcome, engine)


def _exercise(rig: ExchangeRig, case: FaultCase, tally: Tally) -> None:
    since = time.monotonic()
    names = rig.all_batch_names()
    counted = rig.violations()
    window = _fault_window(rig, case, names, tally)
    tally.notes.insert(0, f"fault on for {case.fault_s:g} s, hit {window.hits} requests")
    if window.hits == 0:
        tally.lost += 1
        tally.notes.append("the fault was never hit: nothing was tested")
    _check_batch(case, rig, names, window.batch, tally, "during")
    if window.engine is None:
        tally.lost += 1
        stuck = rig.engine(rig.engine_of[case.venue])
        tally.notes.append(f"{case.venue} engine did not recover: {state_name(stuck.state)} "
                           f"{stuck.failure.message!r}")
    else:
        back_s = time.time() - window.cleared_ms / 1000
        tally.notes.append(f"{case.venue} engine cycling again {back_s:.1f} s after the fault, "
                           f"restarts so far: {window.engine.restarts}")
    venue_names = rig.batch_names[case.venue]
    _check_batch(case, rig, venue_names, rig.batch(venue_names), tally, "after")
    _check_others(case, rig, since, tally)
    violations = {kind: n - counted.get(kind, 0) for kind, n in rig.violations().items()
                  if n > counted.get(kind, 0)}
    if violations:
        tally.lost += 1
        tally.notes.append(f"rate-limit violations: {violations}")


def test_every_fault_kind_is_exercised() -> None:
    # The WebSocket faults hit streams, which engines do not use yet (tests/sim/ws has them).
    assert {case.kind for case in CASES} == set(FaultKind) - WS_FAULTS
    assert {case.venue for case in CASES} == set(ENGINE_VENUES)


@pytest.mark.timeout(max(120, 60 + 15 * ROUNDS))
@pytest.mark.parametrize("case", CASES + (LONG_CASES if ROUNDS > 1 else ()), ids=str)
def test_an_exchange_fault_stays_on_its_venue_and_everything_recovers(
    rig: ExchangeRig, case: FaultCase,
) -> None:
    tally = Tally(f"exchange: {case}")
    rounds = 1 if case in LONG_CASES else ROUNDS
    for n in range(rounds):
        one = Tally(tally.name)
        _exercise(rig, case, one)
        tally.tried += one.tried
        tally.survived += one.survived
        tally.lost += one.lost
        tally.codes.update(one.codes)
        if n == 0 or one.lost:  # the first round's story, and every round that lost something
            tally.notes += [f"round {n + 1}: {note}" for note in one.notes] if n else one.notes
    tally.report()
    assert tally.lost == 0, tally.notes


def _bugs(logs: str) -> list[str]:
    """Log lines of a bug. Tracebacks of deliberately logged engine failures are no bug."""
    expected = ('msg="engine cycle failed"',)
    return [line for line in log_problems(logs) if not any(m in line for m in expected)]


def test_the_daemon_logged_no_unhandled_error(rig: ExchangeRig) -> None:
    """Runs last in this module: a bug in a background task shows only in the log."""
    problems = _bugs(rig.daemon.logs())
    assert not problems, "\n".join(problems)
    assert rig.watch.ended is None, f"WatchEngines ended early: {rig.watch.ended}"
    assert rig.serving()
