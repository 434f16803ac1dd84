"""Runs a rotation against a stopped daemon's state directory."""

from __future__ import annotations

from pathlib import Path

from ctsd import state_dir
from ctsd.config import DaemonConfig
from ctsd.instance_lock import InstanceLock
from ctsd.store.database import Database
from ctsd.store.sealed_secrets import SealedSecretRepository
from ctsd.vault.keyring_setup import open_keyring
from ctsd.vault.master_key import locate_key
from ctsd.vault.rotation import finished_rotation, rotate_master_key


async def run_rotation(config: DaemonConfig, new_key_file: Path | None) -> tuple[str, int]:
    state_dir.prepare(config.state_dir)  # the same private files the daemon insists on
    lock = InstanceLock(config.state_dir)
    lock.acquire("rotate-key")  # refuses while the daemon runs: it holds the old key
    try:
        db = await Database.open(config.state_dir)
        try:
            secrets = SealedSecretRepository(db)
            source = locate_key(config.state_dir, config.master_key_file)
            done = await finished_rotation(secrets, new_key_file)
            if done is not None:  # an earlier run committed, then was interrupted
                return done.key_id.hex(), await secrets.count()
            keyring = await open_keyring(source, secrets)
            new_key, count = await rotate_master_key(source, keyring, secrets, new_key_file)
            return new_key.key_id.hex(), count
        finally:
            await db.close()
    finally:
        lock.release()
