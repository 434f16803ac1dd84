"""`[store]`: where the daemon keeps its state — the SQLite file, or a PostgreSQL server.

    [store]
    url = "postgresql://ctsd@db.internal/ctsd?sslmode=verify-full"
    sqlite_synchronous = "full"   # or "normal"; SQLite only

No `url` (the default): the file `ctsd.db` in the state directory. A
`postgresql://` URL (libpq's form, so `sslmode`, `sslrootcert`, `host=/run/...`
for a Unix socket and the other libpq parameters apply): a server several
daemons share (a fleet, docs/operations.md). Only a restart applies a change.
A password belongs in `~/.pgpass` or `PGPASSFILE`, not in this file; one given
in the URL is never shown (`redacted_url`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from ctsd.errors import ConfigurationError
from ctsd.settings import one_of, setting

SCHEMES = ("postgresql", "postgres")
_SECRET_PARAMS = frozenset({"password", "sslpassword"})


def redacted_url(url: str) -> str:
    """`url` without its password (in the authority or the query), for logs and errors."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    if parts.password is None and not any(k in _SECRET_PARAMS for k, _ in params):
        return url
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = urlencode([(k, "***" if k in _SECRET_PARAMS else v) for k, v in params],
                      safe="*/")
    # spelt out: urlunsplit would drop the // of an empty authority (postgresql:///db)
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def url_password(url: str | None) -> str | None:
    """The password `url` carries (in the authority or as a parameter), if any: the root
    registers it with the log redaction (`ctsd.redaction.SECRETS`)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.password:
        return unquote(parts.password)
    given = dict(parse_qsl(parts.query))
    return given.get("password") or None


def _url(raw: Any, name: str) -> str | None:
    if raw is None or raw == "":
        return None
    value = str(raw)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError as exc:
        raise ConfigurationError(f"{name} is not a URL: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise ConfigurationError(f"{name} must be a postgresql:// URL (or absent: the "
                                 f"SQLite file), not {redacted_url(value)!r}")
    return value


@dataclass(frozen=True)
class StoreSettings:
    """[store]: the database (see the module docstring). A restart applies changes."""

    url: str | None = setting(None, check=_url)
    """postgresql:// URL of a shared database; absent: the SQLite file in state_dir."""
    sqlite_synchronous: str = setting("full", check=one_of("full", "normal"))
    """How the SQLite file (WAL mode) syncs a commit. "full" (the default): a commit
    is on disk before the write returns — every order's PENDING record survives a power
    loss. "normal": it survives a crash of ctsd but not of the machine, and an order
    leaves a few milliseconds sooner (docs/operations.md, "Durability")."""
