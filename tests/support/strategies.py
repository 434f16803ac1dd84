"""A strategy factory for the strategies tests write themselves.

A test strategy needs no cross-field rules; what differs between them is the name, the
description, the schema and how the strategy is built, so one factory takes those.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ctsd.errors import FieldViolation
from ctsd.strategies.base import Strategy
from ctsd.strategies.params import ParamSchema, StrategyParams

NO_PARAMS = ParamSchema(())


@dataclass(frozen=True)
class PlainFactory:
    """A `StrategyFactory` whose strategy `build` makes from the parsed parameters."""

    name: str
    description: str
    build: Callable[[StrategyParams], Strategy]
    schema: ParamSchema = NO_PARAMS

    def check(self, params: StrategyParams, prefix: str) -> list[FieldViolation]:
        return []

    def create(self, params: StrategyParams) -> Strategy:
        return self.build(params)
