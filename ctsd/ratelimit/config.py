"""The limiter's two tables: overrides of the exchanges' limits, and the fleet's Redis.

The defaults live with each exchange (`ctsd/exchanges/<venue>/limits.py`);
the daemon's config carries only what differs, e.g. a Kraken "pro" tier:

    [rate_limits]
    safety_margin = 0.9
    [rate_limits.kraken.api_counter]
    limit = 20

`[fleet]` (`FleetSettings`) makes several daemons count their limits together
in Redis (`ctsd.ratelimit.shared`); without a `redis_url` each counts alone.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ctsd.errors import ConfigurationError
from ctsd.ratelimit.model import DEFAULT_GUARD_S, DEFAULT_SAFETY_MARGIN, BucketSpec
from ctsd.settings import number, read_table, setting


@dataclass(frozen=True)
class LimitOverride:
    """Replaces parts of one exchange limit; None keeps the default."""

    limit: float | None = None
    interval_s: float | None = None
    safety_margin: float | None = None


@dataclass(frozen=True)
class RateLimitOverrides:
    """The `[rate_limits]` table; a reload applies all of it, to the buckets in use too."""

    safety_margin: float = setting(DEFAULT_SAFETY_MARGIN, reload=True)
    """Fraction of every limit the daemon uses (unless a limit overrides it)."""
    guard_s: float = setting(DEFAULT_GUARD_S, reload=True)
    """Added to every window: the most a granted request may take to reach the exchange."""
    limits: Mapping[tuple[str, str], LimitOverride] = setting(
        factory=lambda: MappingProxyType({}), reload=True)
    """(exchange id, limit name) → override: the `[rate_limits.<id>.<limit>]` tables."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))

    def apply(self, exchange: str, name: str, spec: BucketSpec) -> BucketSpec:
        """`spec` (an exchange default) with the global settings and this limit's override."""
        spec = replace(spec, safety_margin=self.safety_margin, guard_s=self.guard_s)
        override = self.limits.get((exchange, name))
        if override is None:
            return spec
        return replace(
            spec,
            limit=spec.limit if override.limit is None else override.limit,
            interval_s=spec.interval_s if override.interval_s is None else override.interval_s,
            safety_margin=(spec.safety_margin if override.safety_margin is None
                           else override.safety_margin),
        )

    def changes_from(self, old: RateLimitOverrides) -> list[str]:
        """What differs from `old`, one `setting: old -> new` each, for the reload's log line."""
        found = [f"{name}: {getattr(old, name):g} -> {getattr(self, name):g}"
                 for name in ("safety_margin", "guard_s")
                 if getattr(old, name) != getattr(self, name)]
        for exchange, name in sorted(set(old.limits) | set(self.limits)):
            before, after = old.limits.get((exchange, name)), self.limits.get((exchange, name))
            if before != after:
                found.append(f"{exchange}.{name}: {_describe(before)} -> {_describe(after)}")
        return found

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> RateLimitOverrides:
        """Parse the `[rate_limits]` table of a config file (see module doc)."""
        try:
            margin = float(raw.get("safety_margin", DEFAULT_SAFETY_MARGIN))
            guard = float(raw.get("guard_s", DEFAULT_GUARD_S))
            limits: dict[tuple[str, str], LimitOverride] = {}
            for exchange, table in raw.items():
                if exchange in ("safety_margin", "guard_s"):
                    continue
                if not isinstance(table, Mapping):
                    raise ConfigurationError(f"rate_limits.{exchange} must be a table")
                for name, entry in table.items():
                    limits[(exchange, name)] = _override(f"rate_limits.{exchange}.{name}", entry)
            result = cls(margin, guard, limits)
            BucketSpec(1.0, 1.0, safety_margin=margin, guard_s=guard)
            for exchange, name in limits:  # validate every override now, not on first use
                result.apply(exchange, name, BucketSpec(1.0, 1.0))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"rate_limits: {exc}") from exc
        return result


def _override(where: str, entry: Any) -> LimitOverride:
    if not isinstance(entry, Mapping):
        raise ConfigurationError(f"{where} must be a table")
    unknown = set(entry) - {"limit", "interval_s", "safety_margin"}
    if unknown:
        raise ConfigurationError(f"{where}: unknown keys {sorted(unknown)}")

    def number(key: str) -> float | None:
        return None if entry.get(key) is None else float(entry[key])

    return LimitOverride(number("limit"), number("interval_s"), number("safety_margin"))


def _describe(override: LimitOverride | None) -> str:
    if override is None:
        return "default"
    parts = [f"{key}={value:g}" for key, value in (
        ("limit", override.limit), ("interval_s", override.interval_s),
        ("safety_margin", override.safety_margin)) if value is not None]
    return " ".join(parts) or "default"


# --- [fleet] -----------------------------------------------------------------------------

REDIS_SCHEMES = ("redis", "rediss", "unix")
SCOPE_SECRET_CREDENTIAL = "fleet-scope-secret"


def _redis_url(raw: Any, name: str) -> str:
    value = str(raw) if raw else ""
    if value and urlsplit(value).scheme not in REDIS_SCHEMES:
        raise ConfigurationError(f"{name} must be a redis://, rediss:// or unix:// URL")
    return value


def _name(raw: Any, name: str) -> str:
    value = str(raw) if isinstance(raw, str) else ""
    if not value or any(c.isspace() or c in "{}" for c in value):
        raise ConfigurationError(f"{name} must be a name without spaces or braces")
    return value


def _optional_path(raw: Any, _name: str) -> Path | None:
    return Path(str(raw)).expanduser() if raw else None


_SECONDS = number(0, 86400, low_open=True, what="a number of seconds above 0")


def redacted(url: str) -> str:
    """`url` without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


@dataclass(frozen=True)
class FleetSettings:
    """[fleet]: count rate limits together with other daemons, in Redis.

    A restart applies changes (the whole table): a daemon joins or leaves a fleet
    only between runs. The timings rarely need changing; they bound what a daemon
    that dies or loses Redis can hold, and how fast the others notice.
    """

    redis_url: str = setting("", check=_redis_url)
    """redis://, rediss:// (TLS) or unix:// URL; empty: this daemon counts alone."""
    egress: str = setting("default", check=_name)
    """Daemons declaring the same egress share the exchanges' per-IP limits (by
    default all do: sharing where the IPs differ costs speed, never a ban)."""
    member: str = setting("", check=_name)
    """This daemon's name among the members (default: the host name); each run adds a
    random suffix, so a restarted daemon does not inherit its predecessor's grants."""
    prefix: str = setting("cts", check=_name)
    """Prefix of every Redis key: fleets sharing one Redis differ by it."""
    scope_secret_file: Path | None = setting(None, check=_optional_path)
    """The key of the fingerprints naming per-account scopes in Redis (any bytes,
    the same file on every member; default: credential `fleet-scope-secret`, else
    derived from the master key, shared by members of one store)."""
    heartbeat_s: float = setting(1.0, check=_SECONDS)
    stale_after_s: float = setting(3.0, check=_SECONDS)
    """A member whose heartbeat is older may be counting on its own share."""
    max_flight_s: float = setting(15.0, check=_SECONDS)
    """How long an unanswered request counts past its daemon's last heartbeat (each
    heartbeat renews it): what a daemon that died mid-request holds."""
    fallback_limit_s: float = setting(300.0, check=_SECONDS)
    """How long a daemon cut off from Redis goes on with its share; then it stops."""
    poll_s: float = setting(0.1, check=_SECONDS)
    """The longest a queued request waits before asking Redis again."""
    lease_s: float = setting(2.0, check=_SECONDS)
    """How long a request waiting in Redis's queue holds its place without asking."""
    timeout_s: float = setting(1.0, check=_SECONDS)
    """A Redis call slower than this counts as Redis unreachable."""

    def __post_init__(self) -> None:
        if self.stale_after_s <= self.heartbeat_s:
            raise ConfigurationError("[fleet] stale_after_s must exceed heartbeat_s")
        if self.max_flight_s <= self.heartbeat_s:
            raise ConfigurationError("[fleet] max_flight_s must exceed heartbeat_s")

    @property
    def enabled(self) -> bool:
        return bool(self.redis_url)

    @classmethod
    def read(cls, table: Mapping[str, Any], env: Mapping[str, str]) -> FleetSettings:
        """The `[fleet]` table; the member defaults to the host name, the scope secret
        to the systemd credential when it is loaded."""
        member = None if table.get("member") else socket.gethostname() or "ctsd"
        secret = None
        creds = env.get("CREDENTIALS_DIRECTORY")
        if not table.get("scope_secret_file") and creds and (
                Path(creds) / SCOPE_SECRET_CREDENTIAL).is_file():
            secret = Path(creds) / SCOPE_SECRET_CREDENTIAL
        given = {k: v for k, v in (("member", member), ("scope_secret_file", secret))
                 if v is not None}
        return read_table(cls, table, "fleet", **given)
