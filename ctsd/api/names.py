"""Resource names of connections: `connections/{id}` in, the id out."""

from __future__ import annotations

from ctsd.connections.validation import ID_PATTERN
from ctsd.errors import InvalidArgument

NAME_PREFIX = "connections/"


def connection_id_from_name(name: str, field: str = "name") -> str:
    if not name.startswith(NAME_PREFIX) or "/" in name[len(NAME_PREFIX) :]:
        raise InvalidArgument.field(field, "must be connections/{connection}")
    connection_id = name[len(NAME_PREFIX) :]
    if not ID_PATTERN.fullmatch(connection_id):
        raise InvalidArgument.field(
            field, "must be connections/{connection} with an id of a-z, 0-9 and '-'"
        )
    return connection_id
