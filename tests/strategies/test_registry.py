from __future__ import annotations

import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from ctsd.errors import ConfigurationError, InvalidArgument
from ctsd.strategies.base import StrategyFactory
from ctsd.strategies.grid import GRID
from ctsd.strategies.registry import ENTRY_POINT_GROUP, StrategyRegistry, discover
from ctsd.strategies.sma_cross import SMA_CROSS

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def declared_entry_points() -> list[EntryPoint]:
    """The `cts.strategies` table of our own pyproject, as the installer will publish it."""
    table = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"][ENTRY_POINT_GROUP]
    return [EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in table.items()]


def test_the_built_ins_are_registered_through_the_entry_point_group() -> None:
    registry = discover(declared_entry_points())
    assert registry.names() == ["grid", "sma_cross"]
    assert registry.get("sma_cross") is SMA_CROSS
    assert registry.get("grid") is GRID
    assert registry.broken == ()


def test_default_discovery_reads_installed_metadata_without_failing() -> None:
    # The built-ins appear here once the package is (re)installed with this pyproject.toml.
    registry = discover()
    assert all(isinstance(f, StrategyFactory) for f in registry.factories.values())


def test_a_broken_plugin_is_listed_not_fatal() -> None:
    points = [*declared_entry_points(),
              EntryPoint("missing", "no_such_module:FACTORY", ENTRY_POINT_GROUP),
              EntryPoint("not_a_factory", "decimal:Decimal", ENTRY_POINT_GROUP),
              EntryPoint("alias", "ctsd.strategies.grid:GRID", ENTRY_POINT_GROUP)]
    registry = discover(points)
    assert registry.names() == ["grid", "sma_cross"]
    assert {b.name: b.error.split(":")[0] for b in registry.broken} == {
        "missing": "ModuleNotFoundError", "not_a_factory": "not a StrategyFactory",
        "alias": "factory calls itself 'grid'"}


def test_a_name_claimed_twice_refuses_to_start() -> None:
    twice = [EntryPoint("grid", "ctsd.strategies.grid:GRID", ENTRY_POINT_GROUP),
             EntryPoint("grid", "other.module:GRID", ENTRY_POINT_GROUP)]
    with pytest.raises(ConfigurationError):
        discover(twice)
    with pytest.raises(ConfigurationError):
        StrategyRegistry.of(GRID, GRID)


def test_an_unknown_name_is_an_invalid_argument_naming_the_field() -> None:
    registry = StrategyRegistry.of(SMA_CROSS, GRID)
    with pytest.raises(InvalidArgument) as caught:
        registry.get("rsi")
    assert caught.value.violations[0].field == "config.strategy"
    assert "grid, sma_cross" in caught.value.violations[0].description


def test_the_registry_cannot_be_mutated_after_construction() -> None:
    registry = StrategyRegistry.of(SMA_CROSS)
    with pytest.raises(TypeError):
        registry.factories["grid"] = GRID  # type: ignore[index]
