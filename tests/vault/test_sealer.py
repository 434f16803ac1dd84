"""Sealed blobs open only in their own row and field, under a key the keyring holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctsd.errors import SealError
from ctsd.vault.master_key import MasterKey, generate_key
from ctsd.vault.sealer import Keyring, blob_key_id

SECRET = "very-secret-value"


def keyring() -> Keyring:
    return Keyring(MasterKey(generate_key(), Path("test")))


def test_round_trip_records_key_id() -> None:
    ring = keyring()
    sealed = ring.seal("a", "api_secret", SECRET)
    assert SECRET.encode() not in sealed.blob
    assert blob_key_id(sealed.blob) == ring.current.key_id == sealed.key_id
    assert ring.open("a", "api_secret", sealed.blob) == SECRET


@pytest.mark.parametrize(("conn", "field"), [("b", "api_secret"), ("a", "api_key")])
def test_blob_moved_to_another_row_or_field_fails(conn: str, field: str) -> None:
    ring = keyring()
    blob = ring.seal("a", "api_secret", SECRET).blob
    with pytest.raises(SealError):
        ring.open(conn, field, blob)


def test_tampered_blob_fails() -> None:
    ring = keyring()
    blob = bytearray(ring.seal("a", "api_secret", SECRET).blob)
    blob[-1] ^= 1
    with pytest.raises(SealError):
        ring.open("a", "api_secret", bytes(blob))


def test_other_key_cannot_open_but_a_keyring_with_both_can() -> None:
    old, new = keyring(), keyring()
    blob = old.seal("a", "api_key", SECRET).blob
    with pytest.raises(SealError, match="unknown master key"):
        new.open("a", "api_key", blob)
    both = Keyring(new.current, [old.current])
    assert both.open("a", "api_key", blob) == SECRET


def test_nonces_differ() -> None:
    ring = keyring()
    assert ring.seal("a", "api_key", SECRET).blob != ring.seal("a", "api_key", SECRET).blob
