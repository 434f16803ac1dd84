"""Typed settings: one frozen dataclass per TOML table, each field declared once.

A field says, in one place, its default, how a value from the file or a flag
is checked (`check`: raw value and the setting's name → the typed value, or
ConfigurationError), and whether a reload (SIGHUP) applies it. `read_table`
builds a table's dataclass from those declarations, `reloaded` applies a
reloaded configuration's reloadable fields and names the others, and
`tests/test_config.py` proves every field declares both and is shown in
`systemd/ctsd.toml.example`. Adding a setting is one field here and one line
in the example.

Importing nothing of ctsd but its errors, this module serves the packages
that own their table (`ctsd.ratelimit.config`, `ctsd.exchanges.settings`)
as well as `ctsd.config`.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from ctsd.errors import ConfigurationError

T = TypeVar("T")
S = TypeVar("S")

RELOAD = "reload"
"""Metadata key: True if a reload applies the field, False if it needs a restart."""
CHECK = "check"
"""Metadata key: `check(raw, name)` → the field's value."""
SECTION = "section"
"""Metadata key of a field that holds another table's dataclass (its fields say more)."""

Check = Callable[[Any, str], Any]


def setting(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None,
            reload: bool = False, check: Check | None = None) -> Any:
    """A field of a settings dataclass (see module doc). No default: the table's reader
    works the value out (a path from the environment, say)."""
    return dataclasses.field(default=default, default_factory=factory or dataclasses.MISSING,
                             metadata={RELOAD: reload, CHECK: check})


def section(factory: Callable[[], Any] | None = None, *, reload: bool | None = None) -> Any:
    """A field holding another table's dataclass. `reload` None: each of its fields says;
    True or False: the table as a whole is applied by a reload, or needs a restart."""
    default: Any = dataclasses.MISSING if factory is not None else None
    return dataclasses.field(
        default=default, default_factory=factory or dataclasses.MISSING,
        metadata={SECTION: True, RELOAD: reload})


def read_table(cls: type[S], table: Mapping[str, Any], where: str, **given: Any) -> S:
    """`cls` from `table`: each present key through its field's check, the others their
    defaults; `given` are values the caller worked out itself. Unknown keys are the
    file reader's business: it names the file."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in given:
            values[field.name] = given[field.name]
        elif field.name in table:
            check = field.metadata.get(CHECK)
            raw = table[field.name]
            values[field.name] = check(raw, f"[{where}] {field.name}") if check else raw
    return cls(**values)


def reloaded(running: S, new: S, prefix: str = "") -> tuple[S, list[str]]:
    """`running` with every field of `new` a reload applies; and the names of the fields
    that differ but need a restart (they keep their running values)."""
    changes: dict[str, Any] = {}
    restart: list[str] = []
    for field in dataclasses.fields(running):  # type: ignore[arg-type]
        old, now = getattr(running, field.name), getattr(new, field.name)
        if old == now:
            continue
        name = prefix + field.name
        whole = field.metadata.get(RELOAD)
        if field.metadata.get(SECTION) and whole is None and None not in (old, now):
            changes[field.name], more = reloaded(old, now, f"{name}.")
            restart += more
        elif whole:
            changes[field.name] = now
        else:
            restart.append(name)
    return dataclasses.replace(running, **changes), restart  # type: ignore[type-var]


def leaf_fields(cls: type[Any], prefix: str = "", reload: bool | None = None,
                ) -> Iterator[tuple[str, bool | None]]:
    """Every setting a TOML file can make, as (dotted name, whether a reload applies it:
    the field's word, or its whole table's); a table per id (`[exchanges.<id>]`) is
    named `exchanges.<id>.`."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        declared = field.metadata.get(RELOAD) if reload is None else reload
        held = _held_dataclass(hints[field.name]) if field.metadata.get(SECTION) else None
        if held is None:
            yield prefix + field.name, declared
            continue
        per_id = typing.get_origin(hints[field.name]) in (Mapping, dict)
        yield from leaf_fields(held, f"{prefix}{field.name}.{'<id>.' if per_id else ''}",
                               declared)


def _held_dataclass(hint: Any) -> type[Any] | None:
    """The dataclass a section field holds: declared `X`, `X | None` or `Mapping[str, X]`."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    return next((found for arg in typing.get_args(hint)
                 if (found := _held_dataclass(arg)) is not None), None)


# --- checks: raw value and the setting's name → the value, or ConfigurationError ------------


def _refuse(message: str) -> ConfigurationError:
    return ConfigurationError(message)


def number(low: float, high: float, *, low_open: bool = False, what: str = "") -> Check:
    def check(raw: Any, name: str) -> float:
        ok = isinstance(raw, int | float) and not isinstance(raw, bool)
        if not ok or not (low < raw if low_open else low <= raw) or raw > high:
            raise _refuse(f"{name} must be {what or f'a number from {low:g} to {high:g}'}")
        return float(raw)

    return check


def integer(low: int, high: int) -> Check:
    def check(raw: Any, name: str) -> int:
        if not isinstance(raw, int) or isinstance(raw, bool) or not low <= raw <= high:
            raise _refuse(f"{name} must be an integer from {low} to {high}")
        return raw

    return check


def boolean(raw: Any, name: str) -> bool:
    if not isinstance(raw, bool):
        raise _refuse(f"{name} must be true or false")
    return raw


def one_of(*choices: str) -> Check:
    def check(raw: Any, name: str) -> str:
        value = str(raw).lower()
        if value not in choices:
            raise _refuse(f"{name} must be one of {', '.join(choices)}")
        return value

    return check


def text(raw: Any, name: str) -> str | None:
    """A non-empty string, or None for an empty one."""
    return str(raw) if raw else None
