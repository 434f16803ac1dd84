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
from ctsd.errors import EtagMismatch, FailedPrecondition
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.exchanges.spec import ExchangeSpec
from ctsd.vault.sealer import Keyring, SealedSecret

Clock = Callable[[], datetime]
T = TypeVar("T")
_UPDATE_ATTEMPTS = 5


def utc_now() -> datetime:
    return datetime.now(UTC)


def key_hint(api_key: str) -> str:
    """`****abcd`: enough to recognise a key, too little to matter; short keys show nothing."""
    return "****" + api_key[-4:] if len(api_key) >= 12 else "****"


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
    ) -> None:
        self._repo = repository
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
        for _ in range(_UPDATE_ATTEMPTS):
            current = await self._repo.get(connection_id)
            _check_etag(current, etag)
            updated, hint, sealed, cleared = self._apply(current, patch)
            try:
                # as stored: a new key forgets the account uid, a finished test is kept
                return await self._repo.replace(updated, hint, current.revision, sealed,
                                                cleared)
            except EtagMismatch:
                if etag:
                    raise
                continue  # a concurrent writer won; apply the patch to its result
        raise EtagMismatch(f"connection {connection_id!r} is being changed concurrently; retry")

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
            if connection_id in self._active_engines():
                # Deleting under a running engine would leave it trading on a key that is gone.
                raise FailedPrecondition(
                    f"an engine runs on connection {connection_id!r}; stop it first "
                    f"(cts engine stop {connection_id})"
                )
            await self._repo.delete(connection_id, current.revision if etag else None)

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
        return [
            self._keyring.seal(connection_id, cred.value, value)
            for cred, value in creds.given().items()
            if value
        ]


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
