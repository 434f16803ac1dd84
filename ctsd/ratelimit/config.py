"""Operator overrides of the exchanges' default limits, as one typed, frozen object.

The defaults live with each exchange (`ctsd/exchanges/<venue>/limits.py`);
the daemon's config carries only what differs, e.g. a Kraken "pro" tier:

    [rate_limits]
    safety_margin = 0.9
    [rate_limits.kraken.api_counter]
    limit = 20
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from ctsd.errors import ConfigurationError
from ctsd.ratelimit.model import DEFAULT_GUARD_S, DEFAULT_SAFETY_MARGIN, BucketSpec
from ctsd.settings import setting


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
