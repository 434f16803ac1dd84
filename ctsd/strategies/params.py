"""Strategy parameter schemas: declared once, validated all at once.

Parameters arrive as text (`--param fast=5` on the CLI, a string map over gRPC),
so a schema both parses and checks them. Validation collects every bad field
before raising, so a user fixes a config in one round trip; field paths are
prefixed (`config.params.fast`) to point into the request that carried them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ctsd.errors import FieldViolation, InvalidArgument

ParamValue = int | Decimal | str
RawParam = str | int | float | Decimal


class ParamKind(enum.Enum):
    INT = "int"
    DECIMAL = "decimal"
    CHOICE = "choice"


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One parameter: its type, bounds and default (`None` means required)."""

    name: str
    kind: ParamKind
    description: str
    default: ParamValue | None = None
    minimum: Decimal | None = None
    maximum: Decimal | None = None
    choices: tuple[str, ...] = ()

    def parse(self, raw: RawParam) -> ParamValue:
        """The typed value, or ValueError with a message fit for a FieldViolation."""
        if isinstance(raw, bool):
            raise ValueError(f"must be a {self.kind.value}, not a boolean")
        if self.kind is ParamKind.CHOICE:
            text = str(raw)
            if text not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}")
            return text
        number = _number(raw)
        if self.kind is ParamKind.INT:
            if number != number.to_integral_value():
                raise ValueError("must be a whole number")
            self._check_bounds(number)
            return int(number)
        self._check_bounds(number)
        return number

    def _check_bounds(self, number: Decimal) -> None:
        if self.minimum is not None and number < self.minimum:
            raise ValueError(f"must be at least {self.minimum}")
        if self.maximum is not None and number > self.maximum:
            raise ValueError(f"must be at most {self.maximum}")


MAX_DIGITS = 15
MAX_MAGNITUDE = Decimal(10) ** MAX_DIGITS
MAX_PLACES = 18


def bounded_decimal(raw: RawParam) -> Decimal:
    """A number an engine can compute with, or ValueError saying why not.

    Why bounds and not just "finite": `Decimal` accepts `1e999999999`, and the first
    product with it overflows the arithmetic context, inside a cycle instead of at the
    request. No price, amount or balance needs more than 15 digits before the point
    or 18 after it; every decimal a client sends goes through here.
    """
    text = str(raw).strip()
    if len(text) > 64:
        raise ValueError("must be a number of at most 64 characters")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"must be a number, got {text!r}") from None
    if not number.is_finite():
        raise ValueError("must be a finite number")
    if number and number.adjusted() >= MAX_DIGITS:  # no arithmetic: it could overflow
        raise ValueError(f"must be smaller than {MAX_MAGNITUDE:,.0f} in magnitude")
    _, digits, exponent = number.as_tuple()
    extra = -int(exponent) - MAX_PLACES  # places beyond the last one allowed
    if extra > 0 and any(digits[-extra:]):
        raise ValueError(f"must have at most {MAX_PLACES} digits after the point")
    return number


_number = bounded_decimal


@dataclass(frozen=True, slots=True)
class StrategyParams:
    """Validated parameters with typed accessors; immutable so strategies stay pure."""

    values: tuple[tuple[str, ParamValue], ...]

    def _get(self, name: str) -> ParamValue:
        for key, value in self.values:
            if key == name:
                return value
        raise KeyError(name)

    def integer(self, name: str) -> int:
        value = self._get(name)
        assert isinstance(value, int), name
        return value

    def decimal(self, name: str) -> Decimal:
        value = self._get(name)
        assert isinstance(value, int | Decimal), name
        return Decimal(value)

    def choice(self, name: str) -> str:
        value = self._get(name)
        assert isinstance(value, str), name
        return value

    def as_strings(self) -> dict[str, str]:
        """The canonical text form: what is persisted and shown back to users."""
        return {key: str(value) for key, value in self.values}


@dataclass(frozen=True, slots=True)
class ParamSchema:
    specs: tuple[ParamSpec, ...]

    def validate(
        self, raw: Mapping[str, RawParam], prefix: str = "config.params"
    ) -> tuple[StrategyParams, list[FieldViolation]]:
        """Parse what can be parsed and list every violation (unknown names too)."""
        known = {spec.name for spec in self.specs}
        hint = f"unknown parameter; known: {', '.join(sorted(known))}"
        violations = [FieldViolation(f"{prefix}.{name}", hint)
                      for name in sorted(raw) if name not in known]
        values: list[tuple[str, ParamValue]] = []
        for spec in self.specs:
            if spec.name not in raw:
                if spec.default is None:
                    violations.append(FieldViolation(f"{prefix}.{spec.name}", "is required"))
                else:
                    values.append((spec.name, spec.default))
                continue
            try:
                values.append((spec.name, spec.parse(raw[spec.name])))
            except ValueError as exc:
                violations.append(FieldViolation(f"{prefix}.{spec.name}", str(exc)))
        return StrategyParams(tuple(values)), violations


def raise_violations(violations: list[FieldViolation]) -> None:
    """One InvalidArgument naming every bad field, or nothing when there are none."""
    if violations:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        raise InvalidArgument(summary, violations)
