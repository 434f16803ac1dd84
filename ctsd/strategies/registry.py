"""Which strategies exist: built once from the `cts.strategies` entry points, then injected.

Plugins register the way the built-ins do, in their package metadata:

    [project.entry-points."cts.strategies"]
    my_strategy = "my_package.module:FACTORY"

A plugin that fails to import, or resolves to something that is not a
`StrategyFactory`, is left out and listed in `broken` instead of taking the
daemon (and every running engine) down with it; a name claimed twice is an
operator error and refuses to start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from types import MappingProxyType

from ctsd.errors import ConfigurationError, InvalidArgument
from ctsd.strategies.base import StrategyFactory

ENTRY_POINT_GROUP = "cts.strategies"


@dataclass(frozen=True)
class BrokenPlugin:
    name: str
    target: str
    error: str


@dataclass(frozen=True)
class StrategyRegistry:
    """An immutable name -> factory map; build it with `discover` or from explicit factories."""

    factories: Mapping[str, StrategyFactory]
    broken: tuple[BrokenPlugin, ...] = field(default=())

    @classmethod
    def of(cls, *factories: StrategyFactory) -> StrategyRegistry:
        """A registry from factories in hand: for tests and embedders that skip metadata."""
        by_name: dict[str, StrategyFactory] = {}
        for factory in factories:
            if factory.name in by_name:
                raise ConfigurationError(f"strategy {factory.name!r} registered twice")
            by_name[factory.name] = factory
        return cls(MappingProxyType(by_name))

    def names(self) -> list[str]:
        return sorted(self.factories)

    def get(self, name: str, field_path: str = "config.strategy") -> StrategyFactory:
        """The factory, or InvalidArgument naming the field and the known strategies."""
        factory = self.factories.get(name)
        if factory is None:
            known = ", ".join(self.names()) or "none installed"
            raise InvalidArgument.field(field_path, f"unknown strategy {name!r}; known: {known}")
        return factory


def discover(points: Iterable[EntryPoint] | None = None) -> StrategyRegistry:
    """Load every `cts.strategies` entry point (or the given ones, for tests)."""
    found = entry_points(group=ENTRY_POINT_GROUP) if points is None else points
    by_name: dict[str, StrategyFactory] = {}
    broken: list[BrokenPlugin] = []
    for point in sorted(found, key=lambda p: (p.name, p.value)):
        if point.name in by_name:
            raise ConfigurationError(
                f"strategy {point.name!r} is registered twice in {ENTRY_POINT_GROUP!r}")
        try:
            loaded = point.load()
        except Exception as exc:  # any import error of a third-party plugin is isolated
            broken.append(BrokenPlugin(point.name, point.value, f"{type(exc).__name__}: {exc}"))
            continue
        if not isinstance(loaded, StrategyFactory):
            broken.append(BrokenPlugin(point.name, point.value, "not a StrategyFactory"))
        elif loaded.name != point.name:
            broken.append(BrokenPlugin(point.name, point.value,
                                       f"factory calls itself {loaded.name!r}"))
        else:
            by_name[point.name] = loaded
    return StrategyRegistry(MappingProxyType(by_name), tuple(broken))
