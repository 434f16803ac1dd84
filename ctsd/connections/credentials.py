"""Unsealing a connection's credentials for a test, and recognising shared keys.

Plain text exists only between `resolve` and the end of the test that asked.
Two connections "use the same key" when the keyed hashes of their unsealed
credentials match: the hash key is random per process, so the fingerprint is
useless outside this process and is never stored or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from ctsd.connections.model import Connection, CredentialField
from ctsd.connections.ports import ConnectionStore
from ctsd.errors import CredentialsUnavailable, SealError
from ctsd.exchanges.model import ApiCredentials
from ctsd.redaction import KnownSecrets
from ctsd.vault.sealer import Keyring


class CredentialResolver:
    def __init__(
        self,
        repository: ConnectionStore,
        keyring: Keyring,
        fingerprint_key: bytes | None = None,
        secrets: KnownSecrets | None = None,
    ) -> None:
        self._repo = repository
        self._keyring = keyring
        self._secrets = secrets or KnownSecrets()  # the daemon's: ctsd.redaction.SECRETS
        self._fingerprint_key = fingerprint_key or os.urandom(32)

    async def _open(self, conn: Connection, field: CredentialField) -> str | None:
        try:
            blob = await self._repo.sealed_secret(conn.id, field)
            if blob is None:
                return None
            plain = self._keyring.open(conn.id, field.value, blob)
        except SealError as exc:  # another key, a moved or altered row, not a blob at all
            raise CredentialsUnavailable(
                f"the stored {field.value} does not open ({exc.message})") from exc
        # Unsealed, it may reach a library's debug line: the logs redact it from now on.
        self._secrets.remember(conn.id, field.value, plain,
                               is_key=field is CredentialField.API_KEY)
        return plain

    async def resolve(self, conn: Connection) -> ApiCredentials:
        api_key = await self._open(conn, CredentialField.API_KEY)
        secret = await self._open(conn, CredentialField.API_SECRET)
        if not api_key or not secret:
            missing = "API key" if not api_key else "API secret"
            raise CredentialsUnavailable(f"no {missing} is stored")
        passphrase = await self._open(conn, CredentialField.PASSPHRASE)
        return ApiCredentials(api_key, secret, passphrase)

    def fingerprint(self, credentials: ApiCredentials) -> str:
        """Keyed hash of the whole credential set: equal only when key, secret and
        passphrase all are, so a connection with a mistyped secret is never given the
        result of its correctly typed twin. Meaningless outside this process."""
        material = "\0".join(
            (credentials.api_key, credentials.secret, credentials.passphrase or "")
        )
        return hmac.new(self._fingerprint_key, material.encode(), hashlib.sha256).hexdigest()
