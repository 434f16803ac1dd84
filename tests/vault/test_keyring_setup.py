"""The keyring at start: a key generated only while nothing is sealed, and an interrupted
rotation finished or undone from the blobs' key ids, whatever step it reached."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctsd.connections.model import CredentialField
from ctsd.errors import ConfigurationError
from ctsd.store.connections import ConnectionRepository
from ctsd.store.database import Database
from ctsd.store.sealed_secrets import SealedSecretRepository
from ctsd.vault.keyring_setup import open_keyring
from ctsd.vault.master_key import generate_key, locate_key, read_key_file, write_key_file
from ctsd.vault.sealer import Keyring
from tests.store.test_connection_index import conn


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def seal_one(db: Database, keyring: Keyring) -> None:
    await ConnectionRepository(db).insert(conn("a"), "", [keyring.seal("a", "api_key", "k")])


@pytest.mark.asyncio
async def test_the_first_start_generates_a_private_key_and_the_next_reads_it(
        db: Database, tmp_path: Path) -> None:
    source = locate_key(tmp_path, None, env={})
    first = await open_keyring(source, SealedSecretRepository(db))
    assert (source.path.stat().st_mode & 0o777) == 0o600
    again = await open_keyring(source, SealedSecretRepository(db))
    assert again.current.key_id == first.current.key_id


@pytest.mark.asyncio
async def test_a_missing_key_next_to_sealed_secrets_is_refused_and_nothing_written(
        db: Database, tmp_path: Path) -> None:
    source = locate_key(tmp_path, None, env={})
    await seal_one(db, await open_keyring(source, SealedSecretRepository(db)))
    source.path.unlink()
    before = names(tmp_path)
    with pytest.raises(ConfigurationError, match=r"missing.*nothing was written"):
        await open_keyring(source, SealedSecretRepository(db))
    assert names(tmp_path) == before


@pytest.mark.asyncio
@pytest.mark.parametrize("committed", [False, True])
async def test_an_interrupted_rotation_is_finished_or_undone(
        db: Database, tmp_path: Path, committed: bool) -> None:
    source = locate_key(tmp_path, None, env={})
    secrets = SealedSecretRepository(db)
    old = await open_keyring(source, secrets)
    await seal_one(db, old)
    new_material = generate_key()
    write_key_file(tmp_path / "master-key.new", new_material)
    if committed:
        rotated = Keyring(read_key_file(tmp_path / "master-key.new"), [old.current])
        await secrets.reseal_all(lambda b: (
            rotated.current.key_id.hex(),
            rotated.seal(b.connection_id, b.field, rotated.open(b.connection_id, b.field,
                                                                 b.blob)).blob))
    opened = await open_keyring(source, secrets)
    assert (opened.current.material == new_material) is committed
    assert read_key_file(source.path).material == opened.current.material
    assert not (tmp_path / "master-key.new").exists()
    blob = await ConnectionRepository(db).sealed_secret("a", CredentialField.API_KEY)
    assert blob is not None and opened.open("a", "api_key", blob) == "k"
