"""Proto enums as the short words people type and read (`API_TYPE_SPOT` ↔ `spot`).

One spelling rule for every enum: drop the type prefix, lower-case, and use
hyphens (`POSITION_MODE_ONE_WAY` → `one-way`). Input also accepts underscores
(`perpetual_futures`), so names copied from JSON output or the proto work.
"""

from __future__ import annotations

from typing import Protocol

from google.protobuf.descriptor import EnumDescriptor

UNSET = "-"


class ProtoEnum(Protocol):
    """A generated enum class such as `connection_pb2.ApiType`; only its descriptor is used."""

    @property
    def DESCRIPTOR(self) -> EnumDescriptor: ...


def _prefix(enum_type: ProtoEnum) -> str:
    """`API_TYPE_` for ApiType: AIP enums name their zero value `<PREFIX>UNSPECIFIED`."""
    zero = enum_type.DESCRIPTOR.values_by_number[0].name
    return zero.removesuffix("UNSPECIFIED")


def label(enum_type: ProtoEnum, value: int) -> str:
    """The short word for a value; `-` for UNSPECIFIED or a value this client does not know."""
    if value == 0 or value not in enum_type.DESCRIPTOR.values_by_number:
        return UNSET
    name = enum_type.DESCRIPTOR.values_by_number[value].name
    return name.removeprefix(_prefix(enum_type)).lower().replace("_", "-")


def choices(enum_type: ProtoEnum) -> list[str]:
    """The words accepted on the command line, in declaration order, UNSPECIFIED left out."""
    return [label(enum_type, v.number) for v in enum_type.DESCRIPTOR.values if v.number != 0]


def parse(enum_type: ProtoEnum, word: str) -> int:
    """The value for a word; ValueError (argparse's cue for "invalid choice") otherwise."""
    wanted = word.strip().lower().replace("_", "-")
    for value in enum_type.DESCRIPTOR.values:
        if value.number != 0 and label(enum_type, value.number) == wanted:
            return int(value.number)
    raise ValueError(f"invalid choice {word!r} (choose from {', '.join(choices(enum_type))})")


def full_name(enum_type: ProtoEnum, value: int) -> str:
    """The proto name of a value (`API_TYPE_SPOT`), as filters and JSON spell it."""
    return str(enum_type.DESCRIPTOR.values_by_number[value].name)
