"""The connection use cases: validate, seal, store; transport-agnostic.

Credentials arrive in plain text only here, are sealed at once, and leave
only as `CredentialsInfo` (set or not, and a masked hint of the API key).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TypeVar

from ctsd.connections.filtering import parse_filter
from ctsd.connections.locks import ConnectionLocks
from ctsd.connections.model import (
    Connection,
    ConnectionDraft,
    ConnectionPatch,
    CredentialField,
    CredentialsInfo,
    CredentialsInput,
    MarginMode,
    MarketDataMethod,
    PositionMode,
)
from ctsd.connections.paging import decode_token, encode_token, page_size
from ctsd.connections.ports import ConnectionStore
from ctsd.connections.validation import (
    Violations,
    check_connection_id,
    check_credential_values,
    check_credentials_complete,
    check_display_name,
    check_market,
    check_secret_format,
    resolve_exchange,
)
from ctsd.errors import EtagMismatch, FailedPrecondition, NotFound
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.exchanges.spec import ExchangeSpec
from ctsd.redaction import KnownSecrets, key_hint
from ctsd.vault.sealer import Keyring, SealedSecret

Clock = Callable[[], datetime]
T = TypeVar("T")
_UPDATE_ATTEMPTS = 5


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ConnectionListing:
    connections: list[Connection]
    next_page_token: str
    total_size: int


class ConnectionManager:
    def __init__(
        self,
        repository: ConnectionStore,
        keyring: Keyring,
        exchanges: ExchangeRegistry,
        clock: Clock = utc_now,
        active_engines: Callable[[], set[str]] = set,
        locks: ConnectionLocks | None = None,
        secrets: KnownSecrets | None = None,
    ) -> None:
        self._repo = repository
        self._secrets = secrets or KnownSecrets()  # the daemon's: ctsd.redaction.SECRETS
        self._keyring = keyring
        self._exchanges = exchanges
        self._clock = clock
        self._active_engines = active_engines  # connection ids an engine runs on
        self._locks = locks or ConnectionLocks()  # shared with the engine manager

    @property
    def locks(self) -> ConnectionLocks:
        """Per-connection locks that other use cases on a connection (engines) take too."""
        return self._locks

    def exchanges(self) -> list[ExchangeSpec]:
        return self._exchanges.all()

    async def get(self, connection_id: str) -> Connection:
        return await self._repo.get(connection_id)

    async def list_connections(self, filter_text: str, size: int, token: str) -> ConnectionListing:
        limit = page_size(size)
        conditions = parse_filter(filter_text)
        after = decode_token(token, filter_text)
        page = await self._repo.list(conditions, after, limit)
        next_token = "" if page.next_after is None else encode_token(page.next_after, filter_text)
        return ConnectionListing(page.items, next_token, page.total)

    async def create(
        self, draft: ConnectionDraft, connection_id: str, validate_only: bool = False
    ) -> Connection:
        request = Violations()
        out = request.nested("connection.")
        if connection_id:
            check_connection_id(connection_id, "connection_id", request)
        else:
            connection_id = "c-" + secrets.token_hex(6)
        check_display_name(draft.display_name, out)
        spec = resolve_exchange(self._exchanges, draft.exchange, out)
        margin = draft.margin_mode or MarginMode.CROSS
        position = draft.position_mode or PositionMode.ONE_WAY
        check_market(spec, draft.api_type, draft.testnet, margin, position, out)
        check_credential_values(draft.credentials, out)
        check_secret_format(spec, draft.credentials, out)
        given = {f: bool(v) for f, v in draft.credentials.given().items()}
        check_credentials_complete(spec, given, out)
        request.raise_if_any("connection")
        assert draft.api_type is not None  # checked by check_market
        now = self._clock()
        conn = Connection(
            id=connection_id,
            display_name=draft.display_name,
            exchange=draft.exchange,
            api_type=draft.api_type,
            testnet=draft.testnet,
            margin_mode=margin,
            position_mode=position,
            market_data_method=draft.market_data_method or MarketDataMethod.REST,
            enabled=draft.enabled,
            predefined=draft.predefined,
            credentials=_info(given, draft.credentials.api_key or ""),
            created_at=now,
            updated_at=now,
            revision=1,
        )
        if not validate_only:
            sealed = self._seal(connection_id, draft.credentials)
            await self._repo.insert(conn, conn.credentials.api_key_hint, sealed)
        return conn

    async def update(self, connection_id: str, patch: ConnectionPatch, etag: str) -> Connection:
        if patch.enabled is False:
            # Under the lock an engine start takes while it checks the connection: an
            # engine cannot start between this check and the write.
            async with self._locks.lock(connection_id):
                self._refuse_under_engine(connection_id, "disable")
                return await self._update(connection_id, patch, etag)
        return await self._update(connection_id, patch, etag)

    def _refuse_under_engine(self, connection_id: str, action: str) -> None:
        """Engines follow their connection: it is not disabled or deleted under one."""
        if connection_id in self._active_engines():
            raise FailedPrecondition(
                f"an engine runs on connection {connection_id!r}; stop it before you "
                f"{action} the connection (cts engine stop {connection_id})"
            )

    async def _update(self, connection_id: str, patch: ConnectionPatch, etag: str,
                      predefined: bool | None = None) -> Connection:
        for _ in range(_UPDATE_ATTEMPTS):
            current = await self._repo.get(connection_id)
            _check_etag(current, etag)
            updated, hint, sealed, cleared = self._apply(current, patch)
            if predefined is not None:
                updated = replace(updated, predefined=predefined)
            try:
                # as stored: a new key forgets the account uid, a finished test is kept
                return await self._repo.replace(updated, hint, current.revision, sealed,
                                                cleared)
            except EtagMismatch:
                if etag:
                    raise
                continue  # a concurrent writer won; apply the patch to its result
        raise EtagMismatch(f"connection {connection_id!r} is being changed concurrently; retry")

    async def declare(self, draft: ConnectionDraft, connection_id: str) -> str:
        """The operator's `[[connections]]` entry: create the connection, or bring it to
        `draft` writing only what differs; it is predefined either way. Returns what
        happened: "created", "updated" or "unchanged"."""
        async with self._locks.lock(connection_id):
            try:
                current = await self._repo.get(connection_id)
            except NotFound:
                await self.create(replace(draft, predefined=True), connection_id)
                return "created"
            if current.exchange != draft.exchange:
                raise FailedPrecondition(
                    f"connection {connection_id!r} is on {current.exchange}; an exchange cannot "
                    "change: delete it (with force) to declare it anew")
            if current.enabled and not draft.enabled:
                self._refuse_under_engine(connection_id, "disable")
            patch = ConnectionPatch(
                display_name=_changed(draft.display_name, current.display_name),
                api_type=_changed(draft.api_type, current.api_type),
                testnet=_changed(draft.testnet, current.testnet),
                enabled=_changed(draft.enabled, current.enabled),
                credentials=await self._changed_credentials(current, draft.credentials))
            if patch == ConnectionPatch() and current.predefined:
                return "unchanged"
            await self._update(connection_id, patch, "", predefined=True)
            return "updated"

    async def release(self, connection_id: str) -> None:
        """No longer predefined (dropped from the configuration): the API manages it now."""
        async with self._locks.lock(connection_id):
            await self._update(connection_id, ConnectionPatch(), "", predefined=False)

    async def predefined_ids(self) -> set[str]:
        return {c.id for c in await self._repo.all() if c.predefined}

    async def _changed_credentials(self, current: Connection,
                                   wanted: CredentialsInput) -> CredentialsInput:
        """The credentials of `wanted` that differ from the stored ones (unsealed to see)."""
        changed: dict[str, str] = {}
        for cred, value in wanted.given().items():
            blob = await self._repo.sealed_secret(current.id, cred)
            stored = None if blob is None else self._keyring.open(current.id, cred.value, blob)
            if stored != value:
                changed[cred.value] = value
        return CredentialsInput(**changed)

    async def set_enabled(self, connection_id: str, enabled: bool, etag: str) -> Connection:
        return await self.update(connection_id, ConnectionPatch(enabled=enabled), etag)

    async def delete(self, connection_id: str, etag: str, force: bool) -> None:
        async with self._locks.lock(connection_id):  # no engine may start meanwhile
            current = await self._repo.get(connection_id)
            _check_etag(current, etag)
            if current.predefined and not force:
                raise FailedPrecondition(
                    f"connection {connection_id!r} is predefined; delete it with force"
                )
            # Deleting under a running engine would leave it trading on a key that is gone.
            self._refuse_under_engine(connection_id, "delete")
            await self._repo.delete(connection_id, current.revision if etag else None)
            self._secrets.forget(connection_id)

    def _apply(
        self, current: Connection, patch: ConnectionPatch
    ) -> tuple[Connection, str, list[SealedSecret], list[CredentialField]]:
        """The connection after `patch`, validated, with the secrets to write and clear."""
        out = Violations().nested("connection.")
        if patch.display_name is not None:
            check_display_name(patch.display_name, out)
        spec = resolve_exchange(self._exchanges, current.exchange, out)
        updated = replace(
            current,
            display_name=_pick(patch.display_name, current.display_name),
            api_type=_pick(patch.api_type, current.api_type),
            testnet=_pick(patch.testnet, current.testnet),
            margin_mode=_pick(patch.margin_mode, current.margin_mode),
            position_mode=_pick(patch.position_mode, current.position_mode),
            market_data_method=_pick(patch.market_data_method, current.market_data_method),
            enabled=_pick(patch.enabled, current.enabled),
            updated_at=self._clock(),
            revision=current.revision + 1,
        )
        check_market(
            spec,
            updated.api_type,
            updated.testnet,
            updated.margin_mode,
            updated.position_mode,
            out,
        )
        check_credential_values(patch.credentials, out)
        check_secret_format(spec, patch.credentials, out)
        stored = _stored_flags(current.credentials)
        stored.update({f: bool(v) for f, v in patch.credentials.given().items()})
        check_credentials_complete(spec, stored, out)
        out.raise_if_any("connection")
        new_key = patch.credentials.api_key
        hint = key_hint(new_key) if new_key else current.credentials.api_key_hint
        cleared = [f for f, v in patch.credentials.given().items() if v == ""]
        to_seal = CredentialsInput(
            **{f.value: v for f, v in patch.credentials.given().items() if v}
        )
        updated = replace(updated, credentials=_info(stored, new_key or "", hint))
        return updated, hint, self._seal(current.id, to_seal), cleared

    def _seal(self, connection_id: str, creds: CredentialsInput) -> list[SealedSecret]:
        """Seals each given credential; from here on the logs redact it too."""
        sealed = []
        for cred, value in creds.given().items():
            if value:
                self._secrets.remember(connection_id, cred.value, value,
                                       is_key=cred is CredentialField.API_KEY)
                sealed.append(self._keyring.seal(connection_id, cred.value, value))
        return sealed


def _changed(wanted: T, current: T) -> T | None:
    return None if wanted == current else wanted


def _pick(new: T | None, old: T) -> T:
    return old if new is None else new


def _check_etag(current: Connection, etag: str) -> None:
    if etag and etag != current.etag:
        raise EtagMismatch(
            f"etag {etag[:40]!r} does not match connection {current.id!r}; get it again and retry"
        )


def _stored_flags(info: CredentialsInfo) -> dict[CredentialField, bool]:
    return {
        CredentialField.API_KEY: info.api_key_set,
        CredentialField.API_SECRET: info.api_secret_set,
        CredentialField.PASSPHRASE: info.passphrase_set,
    }


def _info(stored: dict[CredentialField, bool], api_key: str, hint: str = "") -> CredentialsInfo:
    return CredentialsInfo(
        api_key_set=stored.get(CredentialField.API_KEY, False),
        api_key_hint=hint or (key_hint(api_key) if api_key else ""),
        api_secret_set=stored.get(CredentialField.API_SECRET, False),
        passphrase_set=stored.get(CredentialField.PASSPHRASE, False),
    )
