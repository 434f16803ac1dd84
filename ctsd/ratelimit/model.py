"""The limiter's vocabulary: lanes, bucket shapes, scope keys and usage snapshots."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field


class Lane(enum.IntEnum):
    """Who goes first when a bucket frees up: lower values are served first.

    Orders and cancels must not queue behind a batch of key tests, and a key
    test a person is watching must not queue behind engines polling prices.
    """

    ORDER = 0
    TEST = 1
    POLL = 2


class MeterKind(enum.Enum):
    """How an exchange counts a budget."""

    WINDOW = "window"
    """At most `limit` units in any `interval_s` (Binance weight, Bybit and OKX groups)."""
    DECAYING = "decaying"
    """A counter capped at `limit` that drains `limit / interval_s` per second (Kraken)."""


DEFAULT_SAFETY_MARGIN = 0.9
DEFAULT_GUARD_S = 0.01


@dataclass(frozen=True)
class BucketSpec:
    """One budget as the limiter enforces it, after overrides.

    `safety_margin` scales the limit down (0.9: never use more than 90 %), so
    requests from elsewhere on the same key or IP and clock differences between
    us and the exchange do not tip it over. `guard_s` lengthens each window a
    little past the answer's arrival, for the exchange's own timestamping; a
    request that leaves or arrives late is covered without it, since every
    charge counts until a whole window after its answer (`meters`).
    """

    limit: float
    interval_s: float
    kind: MeterKind = MeterKind.WINDOW
    safety_margin: float = DEFAULT_SAFETY_MARGIN
    guard_s: float = DEFAULT_GUARD_S

    def __post_init__(self) -> None:
        if not (self.limit > 0 and math.isfinite(self.limit)):
            raise ValueError(f"limit must be positive, got {self.limit}")
        if not (self.interval_s > 0 and math.isfinite(self.interval_s)):
            raise ValueError(f"interval_s must be positive, got {self.interval_s}")
        if not 0 < self.safety_margin <= 1:
            raise ValueError(f"safety_margin must be in (0, 1], got {self.safety_margin}")
        if not 0 <= self.guard_s < math.inf:
            raise ValueError(f"guard_s must be >= 0, got {self.guard_s}")

    @property
    def capacity(self) -> float:
        """The units the limiter hands out per window (or the counter's cap).

        Never below one unit (nor above the limit): a margin on "1 request per
        5 s" would forbid the request outright; the window and its guard keep
        such limits safe on their own.
        """
        return max(self.limit * self.safety_margin, min(self.limit, 1.0))


@dataclass(frozen=True, order=True)
class ScopeKey:
    """Which requests share a bucket: one exchange limit, counted for one owner.

    `owner` is "ip" for limits the exchange counts per source address (every
    connection of this host shares them) or an opaque account fingerprint;
    `display` is what health and metrics show (a masked key hint, never a key).
    Keys sort account scopes before IP scopes, the order in which a request
    takes its buckets: holding a narrow reservation while waiting for the
    shared one wastes less than the other way round, and one global order
    rules out deadlocks.
    """

    rank: int
    exchange: str
    limit: str
    owner: str
    display: str = field(default="", compare=False)

    IP_RANK = 1
    ACCOUNT_RANK = 0

    @classmethod
    def ip(cls, exchange: str, limit: str, host: str = "") -> ScopeKey:
        owner = f"ip@{host}" if host else "ip"
        return cls(cls.IP_RANK, exchange, limit, owner, owner)

    @classmethod
    def account(cls, exchange: str, limit: str, fingerprint: str, hint: str) -> ScopeKey:
        return cls(cls.ACCOUNT_RANK, exchange, limit, f"key:{fingerprint}", f"key {hint}")

    @classmethod
    def uid(cls, exchange: str, limit: str, uid: str) -> ScopeKey:
        """An account limit the venue counts per UID: shared by every key of the account."""
        return cls(cls.ACCOUNT_RANK, exchange, limit, f"uid:{uid}", f"uid {uid}")

    @property
    def scope(self) -> str:
        return "ip" if self.rank == self.IP_RANK else "account"

    @property
    def label(self) -> str:
        return f"{self.exchange}/{self.limit}/{self.display or self.owner}"


@dataclass(frozen=True)
class LimitChange:
    """One bucket's limits before and after a reload, for the log line that says so."""

    key: ScopeKey
    old: BucketSpec
    new: BucketSpec

    def describe(self) -> str:
        """E.g. `binance/request_weight/ip: 1080/60s -> 540/60s` (usable capacity per window)."""
        return (f"{self.key.label}: {self.old.capacity:g}/{self.old.interval_s:g}s -> "
                f"{self.new.capacity:g}/{self.new.interval_s:g}s")


class Counting(enum.Enum):
    """Where a bucket is counted (see `ctsd.ratelimit.shared` for the fleet's)."""

    LOCAL = "local"
    """By this daemon alone."""
    SHARED = "shared"
    """In Redis, with every daemon of the fleet that shares the scope."""
    FALLBACK = "fallback"
    """Redis unreachable: by this daemon, within its share of the limit."""
    BLOCKED = "blocked"
    """Redis unreachable and nothing granted: others' grants may still count, or this
    daemon has been cut off for longer than it may go on alone."""


@dataclass(frozen=True)
class ScopeUsage:
    """One bucket's state, for health answers and metrics."""

    key: ScopeKey
    kind: MeterKind
    used: float
    """Units counted in the current window (or the counter's level), reservations included."""
    capacity: float
    limit: float
    interval_s: float
    queued: int
    waits: int
    """Requests that had to queue for budget."""
    wait_time_s: float
    """Total time requests spent queued."""
    grants: int
    rejections: int
    """429/418-style refusals reported back by the exchange."""
    paused_for_s: float
    """Seconds until a pause (after Retry-After or a ban) ends; 0 when not paused."""
    usage_corrections: int
    """Times the exchange's own usage header showed more than we had counted."""
    counting: Counting = Counting.LOCAL
    share: float = 1.0
    """The fraction of `capacity` this daemon may use (below 1 only on its fallback share)."""
