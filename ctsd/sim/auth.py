"""Authentication building blocks shared by every venue.

Each venue implements its own signing scheme (what is signed, which headers)
with these helpers, in the order the exchange checks things; failures are raised
as `AuthError` with an `AuthFailure` that the venue renders as its own error code
and body. `lookup` also consumes the injected credential faults, so "invalid key"
and "IP not whitelisted" on command answer exactly like the real conditions.
"""

from __future__ import annotations

import base64
import hmac
from enum import StrEnum
from typing import TYPE_CHECKING

from aiohttp import web

from ctsd.sim.accounts import Account, Permission
from ctsd.sim.faults import AUTH_FAULTS, FaultKind

if TYPE_CHECKING:
    from ctsd.sim.state import Simulator


class AuthFailure(StrEnum):
    MISSING_KEY = "missing_key"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    STALE_TIMESTAMP = "stale_timestamp"
    NONCE_REUSED = "nonce_reused"
    BAD_PASSPHRASE = "bad_passphrase"
    IP_NOT_ALLOWED = "ip_not_allowed"
    PERMISSION_DENIED = "permission_denied"


class AuthError(Exception):
    def __init__(self, failure: AuthFailure, detail: str = "") -> None:
        super().__init__(f"{failure.value}: {detail}" if detail else failure.value)
        self.failure = failure
        self.detail = detail


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def hmac_hex(secret: str | bytes, payload: str | bytes, digest: str = "sha256") -> str:
    return hmac.new(_bytes(secret), _bytes(payload), digest).hexdigest()


def hmac_b64(secret: str | bytes, payload: str | bytes, digest: str = "sha256") -> str:
    return base64.b64encode(hmac.new(_bytes(secret), _bytes(payload), digest).digest()).decode()


def signatures_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison of an expected and a presented signature."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def client_ip(request: web.Request) -> str:
    return request.remote or ""


def check_timestamp(now_ms: int, timestamp_ms: int, window_ms: int, ahead_ms: int = 1000) -> None:
    """The freshness rule exchanges share: not too far ahead, not older than the window."""
    if timestamp_ms >= now_ms + ahead_ms or now_ms - timestamp_ms > window_ms:
        raise AuthError(AuthFailure.STALE_TIMESTAMP, f"timestamp {timestamp_ms}, server {now_ms}")


def lookup(sim: Simulator, venue: str, request: web.Request, api_key: str | None) -> Account:
    """The account for `api_key`, after injected faults and the IP whitelist."""
    if not api_key:
        raise AuthError(AuthFailure.MISSING_KEY)
    fault = sim.faults.take(venue, _venue_path(venue, request), AUTH_FAULTS,
                            method=request.method)
    if fault is not None and fault.kind is FaultKind.INVALID_KEY:
        raise AuthError(AuthFailure.UNKNOWN_KEY, "injected")
    account = sim.accounts.get(api_key)
    if account is None:
        raise AuthError(AuthFailure.UNKNOWN_KEY)
    ip = client_ip(request)
    if (fault is not None and fault.kind is FaultKind.IP_NOT_WHITELISTED) or (
        account.spec.ip_whitelist and ip not in account.spec.ip_whitelist
    ):
        raise AuthError(AuthFailure.IP_NOT_ALLOWED, ip)
    return account


def require(account: Account, permission: Permission) -> None:
    if permission not in account.spec.permissions:
        raise AuthError(AuthFailure.PERMISSION_DENIED, permission.value)


def _venue_path(venue: str, request: web.Request) -> str:
    prefix = f"/{venue}"
    path = request.path
    return path[len(prefix):] if path.startswith(prefix) else path
