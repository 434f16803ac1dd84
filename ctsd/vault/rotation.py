"""`ctsd rotate-key`: re-seal every secret under a new master key, all or nothing.

The order of steps is what makes an interruption at any instant safe: the new
key is durable on disk before any blob is sealed under it; the blobs change in
one transaction; only then is the key put in place. Nothing is ever deleted on
the way out of a failure: whether the transaction committed is read from the
blobs' key ids by the next start or the next run (`ctsd.vault.keyring_setup`),
never guessed from an exception (a cancellation may arrive after the commit).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ctsd.errors import ConfigurationError
from ctsd.vault import master_key
from ctsd.vault.keyring_setup import pending_key_path
from ctsd.vault.ports import SealedSecretStore, StoredBlob
from ctsd.vault.sealer import Keyring

log = logging.getLogger("ctsd.vault")


async def finished_rotation(secrets: SealedSecretStore,
                            new_key_file: Path | None) -> master_key.MasterKey | None:
    """The key of an unmanaged rotation that committed before it was interrupted.

    Its blobs are then sealed under `new_key_file`, which the operator still has to
    install; running the rotation again must say so instead of refusing the key.
    """
    done = _existing_key(new_key_file)
    if done is None:
        return None
    used = await secrets.key_ids()
    return done if used and used <= {done.key_id.hex()} else None


def _existing_key(path: Path | None) -> master_key.MasterKey | None:
    return master_key.read_key_file(path) if path is not None and path.exists() else None


async def rotate_master_key(
    source: master_key.KeySource, keyring: Keyring, secrets: SealedSecretStore,
    new_key_file: Path | None,
) -> tuple[master_key.MasterKey, int]:
    """Returns the new key and the number of re-sealed secrets.

    A managed key (the state dir's) is replaced in place. A key from a
    systemd credential or `--new-key-file` cannot be rewritten by us: the
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
        # The keyring opened, so every blob is under the current key: a leftover key
        # file seals nothing, whether from an interrupted run or placed by hand.
        raise ConfigurationError(
            f"{target} already exists and no secret is sealed under it; remove it or "
            "choose another path"
        )
    material = master_key.generate_key()
    master_key.write_key_file(target, material)
    new_key = master_key.MasterKey(material, target)
    rotated = Keyring(new_key, [keyring.current])

    def reseal(stored: StoredBlob) -> tuple[str, bytes]:
        plain = rotated.open(stored.connection_id, stored.field, stored.blob)
        sealed = rotated.seal(stored.connection_id, stored.field, plain)
        return sealed.key_id.hex(), sealed.blob

    try:
        count = await secrets.reseal_all(reseal)
    except BaseException:
        log.warning("key rotation interrupted; the next start or rotate-key finishes or undoes "
                    "it", extra={"new_key": str(target)})
        raise
    if source.managed:
        os.replace(target, source.path)
        master_key.sync_directory(source.path.parent)
        new_key = master_key.MasterKey(material, source.path)
    log.info("rotated master key", extra={"key_id": new_key.key_id.hex(), "secrets": count})
    return new_key, count

