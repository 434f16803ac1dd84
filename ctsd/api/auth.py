"""Who may call: a bearer token, a client certificate, or both, by configuration.

Each configured method must pass. The token travels as
`authorization: Bearer <token>` and is compared in constant time
(`hmac.compare_digest`). Client certificates are verified by TLS itself
(`[tls] client_ca_file` makes the handshake require one); `[auth]
client_names`, when set, further limits which certificate names (CN or DNS
SAN) may call. Refusals answer UNAUTHENTICATED (no or wrong credentials) or
PERMISSION_DENIED (a valid certificate that is not allowed), are logged
with the method, reason and peer, and counted. The token never appears in a
log line or an answer.

Health and reflection are guarded like everything else unless `[auth]
open_services` names them: load-balancer probes usually cannot send tokens.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from ctsd.api import handlers
from ctsd.api.handlers import Context, WrappingInterceptor
from ctsd.api.request_rate import PeerBudget, peer_key
from ctsd.config import AuthConfig, DaemonConfig
from ctsd.errors import ConfigurationError
from ctsd.ops.metrics import RpcMetrics
from ctsd.transport.tls import read_private_file

log = logging.getLogger("ctsd.auth")

MIN_TOKEN_CHARS = 16
OPEN_PREFIXES = {
    "health": ("/grpc.health.v1.Health/",),
    "reflection": ("/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1."),
}


def load_token(path: Path) -> bytes:
    token = read_private_file(path, "auth token").strip()
    if len(token) < MIN_TOKEN_CHARS or any(c <= 0x20 or c > 0x7E for c in token):
        raise ConfigurationError(
            f"auth token {path} must be at least {MIN_TOKEN_CHARS} printable ASCII "
            "characters without spaces (e.g. `openssl rand -hex 32` or `python -c "
            "'import secrets; print(secrets.token_hex(32))'`)"
        )
    return token


@dataclass(frozen=True)
class Refusal:
    code: grpc.StatusCode
    reason: str  # a fixed word: the metric label and the log field
    message: str


MISSING_TOKEN = Refusal(grpc.StatusCode.UNAUTHENTICATED, "missing_token", "missing bearer token")
WRONG_TOKEN = Refusal(grpc.StatusCode.UNAUTHENTICATED, "invalid_token", "invalid bearer token")
NO_CERTIFICATE = Refusal(
    grpc.StatusCode.UNAUTHENTICATED, "missing_certificate", "a client certificate is required"
)
NAME_NOT_ALLOWED = Refusal(
    grpc.StatusCode.PERMISSION_DENIED,
    "certificate_not_allowed",
    "the client certificate is not allowed to call this daemon",
)


def _bearer(context: Context) -> bytes | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            scheme, _, credential = text.strip().partition(" ")
            return credential.strip().encode() if scheme.lower() == "bearer" else b""
    return None


def _certificate_names(context: Context) -> set[str]:
    auth = context.auth_context()
    names = [*auth.get("x509_common_name", ()), *auth.get("x509_subject_alternative_name", ())]
    return {n.decode() if isinstance(n, bytes) else str(n) for n in names}


class Authenticator:
    """Checks every call against the configured methods."""

    def __init__(self, auth: AuthConfig, token: bytes | None, mtls: bool) -> None:
        self._token = token
        self._mtls = mtls
        self._allowed_names = frozenset(auth.client_names)
        self._open = tuple(p for name in auth.open_services for p in OPEN_PREFIXES[name])

    @classmethod
    def from_config(cls, config: DaemonConfig) -> Authenticator | None:
        """None when nothing is configured: the socket's file mode is the guard.

        Client certificates exist only on the TCP port (TLS is not used on the
        Unix socket); a token is required on whichever listener is configured.
        """
        tcp = config.listen.unix_path is None
        mtls = tcp and config.tls is not None and config.tls.client_ca_file is not None
        token = load_token(config.auth.token_file) if config.auth.token_file else None
        if token is None and not mtls:
            return None
        return cls(config.auth, token, mtls)

    def is_open(self, method: str) -> bool:
        return method.startswith(self._open) if self._open else False

    def check(self, context: Context) -> Refusal | None:
        if self._token is not None:
            given = _bearer(context)
            if not given:
                return MISSING_TOKEN
            if not hmac.compare_digest(given, self._token):
                return WRONG_TOKEN
        if self._mtls:
            names = _certificate_names(context)
            if not names:  # TLS already required one; a plaintext port cannot pass
                return NO_CERTIFICATE
            if self._allowed_names and not names & self._allowed_names:
                return NAME_NOT_ALLOWED
        return None


REFUSALS_PER_SECOND = 10.0
"""Refused calls a peer gets answered UNAUTHENTICATED each second; beyond, RESOURCE_EXHAUSTED
at once: guessing tokens at line rate costs the daemon neither CPU nor log lines."""


class AuthGuard:
    """The interceptor side: refuse, count, and log at a bounded rate (one line per peer
    every few seconds saying how many were refused); never the token itself."""

    def __init__(self, authenticator: Authenticator, metrics: RpcMetrics,
                 refusals_per_second: float = REFUSALS_PER_SECOND) -> None:
        self._authenticator = authenticator
        self._metrics = metrics
        self._refusals = PeerBudget(refusals_per_second)

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        refusal = self._authenticator.check(context)
        if refusal is not None:
            self._metrics.auth_failed(method, refusal.reason)
            handlers.refused_quietly.set(True)
            peer = peer_key(context.peer() or "")
            within = await self._refusals.take(peer)
            count = self._refusals.log_due(f"{peer} {refusal.reason}")  # a line per reason
            if count:
                log.warning("calls refused", extra={
                    "method": method, "reason": refusal.reason, "peer": context.peer(),
                    "refused": count})
            if not within:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    "too many refused calls from this client; slow down")
            await context.abort(refusal.code, refusal.message)
        yield

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        return WrappingInterceptor(self.around, skip=self._authenticator.is_open)
