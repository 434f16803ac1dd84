"""Batch-test settings: what `[batch]` in the daemon's configuration sets.

Apart from the batch tester so that the configuration (read on every start)
takes its defaults without importing the testers, which the daemon builds with
its first test (`ctsd.wiring.root`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits base·2^(n-1), capped, ±jitter."""

    max_attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    jitter: float = 0.5
    """Share of each delay that is random: 0.5 waits between 50 % and 100 % of it."""

    def delay_s(self, attempt: int, draw: float) -> float:
        """The wait after failed attempt `attempt` (1-based), given `draw` in [0, 1)."""
        raw = min(self.max_delay_s, self.base_delay_s * 2.0 ** (attempt - 1))
        return raw * (1 - self.jitter + self.jitter * draw)


@dataclass(frozen=True)
class BatchSettings:
    """The daemon's defaults for batches (SPEC: concurrency 3, 30 s per item)."""

    concurrency: int = 3
    item_timeout_s: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
