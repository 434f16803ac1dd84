"""The daemon's rate limiter: its own, or the fleet's in Redis; and how accounts are named.

Alone (no `[fleet] redis_url`), the daemon counts every limit in-process and
names an account's scope by a keyed hash under a key of this process. In a
fleet, a scope is a bucket in Redis that every member must name alike:

- per-IP scopes by the `[fleet] egress` the member declares (`FleetLink.bucket_name`);
- per-account scopes by the account's UID where the venue counts per UID and the
  key's UID is known (Bybit, OKX: public-ish, learned by key tests), else by
  HMAC-SHA256 of the exchange id and API key under the fleet's scope secret.

The scope secret is the same on every member and never leaves the host: the
file `[fleet] scope_secret_file` (or the systemd credential `fleet-scope-secret`)
when given, else derived from the master key. Members of one fleet share the
master key already once they share a store; a file keeps names stable across a
key rotation (during a rolling restart onto a new master key, members on the old
and the new key would otherwise name an account differently, and count its
limits apart). Redis then holds only a fingerprint: not the key, and without the
secret not even a way to test a guessed key against it.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from ctsd.errors import ConfigurationError, Unavailable
from ctsd.ratelimit import Limiter, RateLimiter
from ctsd.ratelimit.config import FleetSettings

SCOPE_LABEL = b"cts-fleet-account-scope|"


async def rate_limiter(fleet: FleetSettings) -> Limiter:
    """The process's limiter; joining the fleet fails as a configuration error (exit 78)
    when Redis cannot be reached: a daemon that counted alone instead could exceed every
    limit the fleet shares."""
    if not fleet.enabled:
        return RateLimiter()
    # Imported here: a daemon outside a fleet never loads the Redis client (its start
    # stays as fast as before, and it runs where redis' own dependencies are absent).
    from ctsd.ratelimit.shared import SharedRateLimiter

    try:
        return await SharedRateLimiter(fleet).start()
    except Unavailable as exc:
        raise ConfigurationError(str(exc)) from None


def account_key(fleet: FleetSettings, master_key: bytes) -> bytes | None:
    """The key of account fingerprints: the fleet's scope secret, or None alone (the
    factory then draws one for the process)."""
    if not fleet.enabled:
        return None
    if fleet.scope_secret_file is None:
        return hmac.new(master_key, SCOPE_LABEL + b"master-key", hashlib.sha256).digest()
    secret = _read_secret(fleet.scope_secret_file)
    return hmac.new(secret, SCOPE_LABEL + b"file", hashlib.sha256).digest()


def _read_secret(path: Path) -> bytes:
    try:
        if path.stat().st_mode & 0o077:
            raise ConfigurationError(
                f"[fleet] scope_secret_file {path}: others must not read it (chmod 600)")
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigurationError(f"[fleet] scope_secret_file {path}: {exc.strerror}") from exc
    if len(secret) < 16:
        raise ConfigurationError(
            f"[fleet] scope_secret_file {path} must hold at least 16 bytes of secret")
    return secret
