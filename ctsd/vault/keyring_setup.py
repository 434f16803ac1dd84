"""Building the keyring at start, including recovery of an interrupted rotation.

`ctsd rotate-key` writes the new managed key to `master-key.new`, re-seals
every blob in one transaction, then renames the file over `master-key`. If
it was interrupted, the blobs' recorded key ids say which step it reached:
all under the new key → finish the rename; otherwise → drop the new file.
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
    load_or_create,
    read_key_file,
)
from ctsd.vault.ports import SealedSecretStore
from ctsd.vault.sealer import Keyring

log = logging.getLogger("ctsd.vault")


async def open_keyring(source: KeySource, secrets: SealedSecretStore) -> Keyring:
    current = load_or_create(source)
    pending_path = source.path.parent / PENDING_KEY_NAME
    if source.managed and pending_path.exists():
        current = await _recover_rotation(current, read_key_file(pending_path), secrets)
    used = await secrets.key_ids()
    unknown = used - {current.key_id.hex()}
    if unknown:
        raise ConfigurationError(
            f"secrets in the database are sealed under master key(s) {sorted(unknown)}, "
            f"but the key loaded from {source.path} is {current.key_id.hex()}; "
            "start ctsd with the key they were sealed under"
        )
    return Keyring(current)


async def _recover_rotation(
    current: MasterKey, pending: MasterKey, secrets: SealedSecretStore
) -> MasterKey:
    used = await secrets.key_ids()
    if used and used <= {pending.key_id.hex()}:
        os.replace(pending.source, current.source)
        log.warning("finished an interrupted key rotation", extra={"key_id": pending.key_id.hex()})
        return MasterKey(pending.material, current.source)
    pending.source.unlink()
    log.warning("discarded the key of an interrupted rotation that did not commit")
    return current


def pending_key_path(source: KeySource) -> Path:
    return source.path.parent / PENDING_KEY_NAME
