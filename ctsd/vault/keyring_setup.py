"""Building the keyring at start, including recovery of an interrupted rotation.

`ctsd rotate-key` writes the new managed key to `master-key.new` (complete, or
not there at all), re-seals every blob in one transaction, then renames the
file over `master-key`. It may be interrupted at any instant (SIGINT, SIGTERM,
SIGKILL): the blobs' recorded key ids say which step it reached, and the next
start (or the next `rotate-key`) acts on them and nothing else:

- every blob under the new key → the commit happened: finish the rename;
- every blob under the current key (or no blob) → it did not: drop the new file.

The key is generated on first start only when no secret is sealed yet: a
missing key next to sealed secrets is an error, and nothing is written then.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ctsd.errors import ConfigurationError
from ctsd.vault.master_key import (
    PENDING_KEY_NAME,
    KeySource,
    MasterKey,
    generate_key,
    read_key_file,
    sync_directory,
    write_key_file,
)
from ctsd.vault.ports import SealedSecretStore
from ctsd.vault.sealer import Keyring

log = logging.getLogger("ctsd.vault")


async def open_keyring(source: KeySource, secrets: SealedSecretStore) -> Keyring:
    used = await secrets.key_ids()
    pending_path = pending_key_path(source)
    if source.managed and pending_path.exists():
        current = _recover_rotation(source, pending_path, used)
    else:
        current = _load_or_create(source, used)
    unknown = used - {current.key_id.hex()}
    if unknown:
        raise ConfigurationError(
            f"secrets in the database are sealed under master key(s) {sorted(unknown)}, "
            f"but the key loaded from {source.path} is {current.key_id.hex()}; "
            "start ctsd with the key they were sealed under"
        )
    return Keyring(current)


def _load_or_create(source: KeySource, used: set[str]) -> MasterKey:
    """Read the key; generate the managed one on first start, before any secret exists."""
    if source.managed and not source.path.exists() and not os.path.islink(source.path):
        if used:
            raise ConfigurationError(
                f"master key {source.path} is missing, but secrets in the database are sealed "
                f"under key(s) {sorted(used)}; restore the key file (nothing was written)"
            )
        write_key_file(source.path, generate_key())
    return read_key_file(source.path)


def _recover_rotation(source: KeySource, pending_path: Path, used: set[str]) -> MasterKey:
    pending = read_key_file(pending_path)
    if used and used <= {pending.key_id.hex()}:
        os.replace(pending_path, source.path)
        sync_directory(source.path.parent)
        log.warning("finished an interrupted key rotation", extra={"key_id": pending.key_id.hex()})
        return MasterKey(pending.material, source.path)
    current = read_key_file(source.path)
    if used and not used <= {current.key_id.hex()}:
        return current  # neither key fits: open_keyring says so, and nothing is removed
    pending_path.unlink()
    sync_directory(source.path.parent)
    log.warning("discarded the key of an interrupted rotation that did not commit")
    return current


def pending_key_path(source: KeySource) -> Path:
    return source.path.parent / PENDING_KEY_NAME
