"""Unsealing a connection's key for a test or an engine, and telling shared keys apart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ctsd.connections.credentials import CredentialResolver
from ctsd.connections.model import CredentialsInput
from ctsd.errors import CredentialsUnavailable
from ctsd.exchanges.model import ApiCredentials
from ctsd.vault.master_key import MasterKey, generate_key
from ctsd.vault.sealer import Keyring
from tests.connections.conftest import Domain, draft

pytestmark = pytest.mark.asyncio


async def test_the_stored_key_opens_and_only_its_twin_shares_a_fingerprint(
    domain: Domain,
) -> None:
    one = await domain.manager.create(draft("One"), "one")
    two = await domain.manager.create(draft("Two"), "two")
    other = await domain.manager.create(draft("Three", credentials=CredentialsInput(
        api_key="AKEY-0123456789", api_secret="a-mistyped-secret")), "three")
    resolved = [await domain.credentials.resolve(c) for c in (one, two, other)]
    assert resolved[0] == ApiCredentials("AKEY-0123456789", "the-secret", None)
    prints = [domain.credentials.fingerprint(c) for c in resolved]
    assert prints[0] == prints[1] != prints[2]
    assert "the-secret" not in prints[0]
    fresh = CredentialResolver(domain.repository, domain.keyring)  # another process's key
    assert fresh.fingerprint(resolved[0]) != prints[0]


async def test_a_key_sealed_under_another_master_key_is_unavailable(domain: Domain) -> None:
    made = await domain.manager.create(draft(), "main")
    stranger = Keyring(MasterKey(generate_key(), domain.keyring.current.source))
    with pytest.raises(CredentialsUnavailable, match="the stored api_key does not open"):
        await CredentialResolver(domain.repository, stranger).resolve(made)


@pytest.mark.parametrize("stored", ["a text, not a blob", 12345, 1.5])
async def test_a_stored_secret_of_the_wrong_type_is_unavailable_saying_so(
        domain: Domain, tmp_path: Path, stored: object) -> None:
    made = await domain.manager.create(draft(), "main")
    with sqlite3.connect(tmp_path / "ctsd.db") as raw:  # a tampered row
        raw.execute("UPDATE sealed_secrets SET blob = ? WHERE field = 'api_secret'", (stored,))
    raw.close()
    with pytest.raises(CredentialsUnavailable, match="the stored api_secret does not open"
                       ) as caught:
        await domain.credentials.resolve(made)
    assert "not a sealed blob" in str(caught.value.__cause__)
