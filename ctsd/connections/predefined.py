"""`[[connections]]`: connections the operator declares, the only way one becomes predefined.

    [[connections]]
    id = "main"
    display_name = "Main Binance"
    exchange = "binance"
    api_type = "spot"
    api_key_file = "/etc/ctsd/main.key"          # or api_key_credential = "main-key"
    api_secret_file = "/etc/ctsd/main.secret"    # (systemd LoadCredential= names)

Credentials are never inline: each comes from a file only its owner may read, or
from a systemd credential (`$CREDENTIALS_DIRECTORY/<name>`). The daemon creates
or updates these connections at start (a failure is exit 78) and on SIGHUP (a
failure is logged and the running state kept), and marks them predefined; no
client can set that mark. A connection dropped from the file stays, no longer
predefined. Only what differs is written, so a reload that changes nothing
leaves every etag as it was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ctsd.connections.manager import ConnectionManager
from ctsd.connections.model import ApiType, ConnectionDraft, CredentialField, CredentialsInput
from ctsd.errors import ConfigurationError, CtsError
from ctsd.settings import boolean, read_table, setting, text

_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_INLINE = {"api_key", "api_secret", "passphrase", "secret", "password", "credentials"}
SOURCES = {
    CredentialField.API_KEY: ("api_key_file", "api_key_credential"),
    CredentialField.API_SECRET: ("api_secret_file", "api_secret_credential"),
    CredentialField.PASSPHRASE: ("passphrase_file", "passphrase_credential"),
}


def _required_text(raw: Any, name: str) -> str:
    value = text(raw, name)
    if value is None:
        raise ConfigurationError(f"{name} must not be empty")
    return value


def _connection_id(raw: Any, name: str) -> str:
    if not isinstance(raw, str) or not _ID.match(raw):
        raise ConfigurationError(f"{name} must be lowercase letters, digits and '-', "
                                 "starting with a letter (at most 63)")
    return raw


def _api_type(raw: Any, name: str) -> ApiType:
    try:
        return ApiType(str(raw))
    except ValueError:
        raise ConfigurationError(
            f"{name} must be one of {', '.join(t.value for t in ApiType)}") from None


def _path(raw: Any, name: str) -> Path:
    if not isinstance(raw, str) or not raw.startswith("/"):
        raise ConfigurationError(f"{name} must be an absolute path")
    return Path(raw)


@dataclass(frozen=True)
class PredefinedConnection:
    """One `[[connections]]` entry; the credentials are where to read them, not them."""

    id: str = setting(check=_connection_id)
    display_name: str = setting(check=_required_text)
    exchange: str = setting(check=_required_text)
    api_type: ApiType = setting(check=_api_type)
    testnet: bool = setting(False, check=boolean)
    enabled: bool = setting(True, check=boolean)
    api_key_file: Path | None = setting(None, check=_path)
    api_key_credential: str | None = setting(None, check=text)
    api_secret_file: Path | None = setting(None, check=_path)
    api_secret_credential: str | None = setting(None, check=text)
    passphrase_file: Path | None = setting(None, check=_path)
    passphrase_credential: str | None = setting(None, check=text)

    def sources(self, env: Mapping[str, str]) -> dict[CredentialField, Path]:
        """Where each given credential is read from."""
        found: dict[CredentialField, Path] = {}
        for cred, (file_key, credential_key) in SOURCES.items():
            path, name = getattr(self, file_key), getattr(self, credential_key)
            if path is not None:
                found[cred] = path
            elif name is not None:
                directory = env.get("CREDENTIALS_DIRECTORY")
                if not directory:
                    raise ConfigurationError(
                        f"[[connections]] {self.id}: {credential_key} = {name!r} needs systemd "
                        "credentials ($CREDENTIALS_DIRECTORY is not set)")
                found[cred] = Path(directory) / name
        return found


KEYS = frozenset(f.name for f in fields(PredefinedConnection))


def read_predefined(raw: Any) -> tuple[PredefinedConnection, ...]:
    """The `[[connections]]` array of a configuration file, checked."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
        raise ConfigurationError("connections must be [[connections]] tables")
    found: list[PredefinedConnection] = []
    for n, entry in enumerate(raw):
        where = f"connections[{n}]"
        inline = sorted(set(entry) & _INLINE)
        if inline:
            raise ConfigurationError(
                f"[[connections]] {entry.get('id', n)}: {', '.join(inline)} must not be written "
                "in the file; name a file (api_key_file) or a systemd credential "
                "(api_key_credential) instead")
        unknown = sorted(set(entry) - KEYS)
        missing = sorted({"id", "display_name", "exchange", "api_type"} - set(entry))
        if unknown or missing:
            raise ConfigurationError(f"[[connections]] {entry.get('id', n)}: "
                                     f"unknown keys {unknown}, missing keys {missing}")
        found.append(read_table(PredefinedConnection, entry, where))
    ids = [c.id for c in found]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ConfigurationError(f"[[connections]] declares {twice} more than once")
    return tuple(found)


def read_credentials(entry: PredefinedConnection, env: Mapping[str, str],
                     read: Any) -> CredentialsInput:
    """`read(path, what)` (owner-only files: `ctsd.transport.tls.read_private_file`)."""
    values: dict[str, str] = {}
    for cred, path in entry.sources(env).items():
        values[cred.value] = read(path, f"[[connections]] {entry.id} {cred.value}").decode(
            ).strip()
    return CredentialsInput(**values)


def ids(entries: Sequence[PredefinedConnection]) -> set[str]:
    return {entry.id for entry in entries}


async def apply_predefined(manager: ConnectionManager, entries: Sequence[PredefinedConnection],
                           env: Mapping[str, str], read: Any) -> dict[str, str]:
    """Every entry declared, every connection no longer listed released; id → what
    happened ("created", "updated", "unchanged", "released"). A refused entry is a
    ConfigurationError naming it (the ones before it are applied)."""
    outcome: dict[str, str] = {}
    for entry in entries:
        draft = ConnectionDraft(
            display_name=entry.display_name, exchange=entry.exchange, api_type=entry.api_type,
            testnet=entry.testnet, enabled=entry.enabled, predefined=True,
            credentials=read_credentials(entry, env, read))
        try:
            outcome[entry.id] = await manager.declare(draft, entry.id)
        except CtsError as exc:
            if isinstance(exc, ConfigurationError):
                raise
            raise ConfigurationError(f"[[connections]] {entry.id}: {exc.message}") from exc
    for connection_id in sorted(await manager.predefined_ids() - ids(entries)):
        await manager.release(connection_id)
        outcome[connection_id] = "released"
    return outcome
