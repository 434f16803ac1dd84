"""`ctsd rotate-key`: re-seal every secret under a new master key, all or nothing."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ctsd.errors import ConfigurationError
from ctsd.vault.keyring_setup import pending_key_path
from ctsd.vault.master_key import KeySource, MasterKey, generate_key, write_key_file
from ctsd.vault.ports import SealedSecretStore, StoredBlob
from ctsd.vault.sealer import Keyring

log = logging.getLogger("ctsd.vault")


async def rotate_master_key(
    source: KeySource, keyring: Keyring, secrets: SealedSecretStore, new_key_file: Path | None
) -> tuple[MasterKey, int]:
    """Returns the new key and the number of re-sealed secrets.

    A managed key (the state dir's) is replaced in place. A key from a
    systemd credential or `--master-key-file` cannot be rewritten by us: the
    new key goes to `new_key_file` for the operator to install.
    """
    if source.managed:
        target = pending_key_path(source)
    elif new_key_file is None:
        raise ConfigurationError(
            f"the master key comes from {source.path}, which ctsd does not manage; "
            "pass --new-key-file PATH and install that file as the new key afterwards"
        )
    else:
        target = new_key_file
    if target.exists():
        raise ConfigurationError(f"{target} already exists; remove it or choose another path")
    material = generate_key()
    write_key_file(target, material)
    new_key = MasterKey(material, target)
    rotated = Keyring(new_key, [keyring.current])

    def reseal(stored: StoredBlob) -> tuple[str, bytes]:
        plain = rotated.open(stored.connection_id, stored.field, stored.blob)
        sealed = rotated.seal(stored.connection_id, stored.field, plain)
        return sealed.key_id.hex(), sealed.blob

    try:
        count = await secrets.reseal_all(reseal)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if source.managed:
        os.replace(target, source.path)
        new_key = MasterKey(material, source.path)
    log.info("rotated master key", extra={"key_id": new_key.key_id.hex(), "secrets": count})
    return new_key, count
