"""AES-256-GCM sealing of credentials, bound to their connection and field.

A blob is `version(1) | key_id(8) | nonce(12) | ciphertext+tag`. The
associated data names the connection id and the field, so a blob copied to
another row, or from the api_key to the api_secret column, fails to open.
The key id lets a keyring open blobs sealed before and after a rotation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ctsd.errors import SealError
from ctsd.vault.master_key import MasterKey

BLOB_VERSION = 1
_HEADER = 1 + 8 + 12


@dataclass(frozen=True)
class SealedSecret:
    field: str
    key_id: bytes
    blob: bytes


def _aad(connection_id: str, field: str) -> bytes:
    return f"cts/v1/connections/{connection_id}/{field}".encode()


def blob_key_id(blob: bytes) -> bytes:
    if len(blob) < _HEADER or blob[0] != BLOB_VERSION:
        raise SealError("unknown sealed blob format")
    return blob[1:9]


class Keyring:
    """Seals under the current key; opens with any key it holds."""

    def __init__(self, current: MasterKey, others: Iterable[MasterKey] = ()) -> None:
        self.current = current
        self._ciphers = {key.key_id: AESGCM(key.material) for key in (current, *others)}

    def key_ids(self) -> set[bytes]:
        return set(self._ciphers)

    def seal(self, connection_id: str, field: str, plaintext: str) -> SealedSecret:
        key_id = self.current.key_id
        nonce = os.urandom(12)
        sealed = self._ciphers[key_id].encrypt(
            nonce, plaintext.encode(), _aad(connection_id, field)
        )
        blob = bytes([BLOB_VERSION]) + key_id + nonce + sealed
        return SealedSecret(field, key_id, blob)

    def open(self, connection_id: str, field: str, blob: bytes) -> str:
        key_id = blob_key_id(blob)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SealError(f"secret sealed under unknown master key {key_id.hex()}")
        try:
            plain = cipher.decrypt(blob[9:21], blob[21:], _aad(connection_id, field))
        except InvalidTag as exc:
            raise SealError(
                f"sealed {field} of connection {connection_id} does not open "
                "(moved, tampered or wrong key)"
            ) from exc
        return plain.decode()
