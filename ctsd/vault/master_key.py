"""Finding, creating and checking the 256-bit master key.

Sources, first found wins: the systemd credential `master-key`
(`$CREDENTIALS_DIRECTORY`, from `LoadCredential=`), an explicit
`--master-key-file`, else `master-key` in the state directory, generated on
first start. A key file anybody but the owner can read is refused: a sealed
database next to a readable key is not sealed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from ctsd.errors import ConfigurationError

KEY_BYTES = 32
STATE_KEY_NAME = "master-key"
PENDING_KEY_NAME = "master-key.new"
CREDENTIAL_NAME = "master-key"


@dataclass(frozen=True)
class MasterKey:
    """Key material and the short id every sealed blob records."""

    material: bytes
    source: Path

    @property
    def key_id(self) -> bytes:
        """First 8 bytes of SHA-256(key): identifies the key without revealing it."""
        return hashlib.sha256(b"cts-master-key-id|" + self.material).digest()[:8]

    def __repr__(self) -> str:  # never print the material
        return f"MasterKey(id={self.key_id.hex()}, source={self.source})"


def generate_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def encode_key(material: bytes) -> bytes:
    """Hex text with a newline: survives copy-paste into `systemd-creds encrypt`."""
    return material.hex().encode() + b"\n"


def decode_key(raw: bytes, source: Path) -> bytes:
    """Accepts 32 raw bytes, 64 hex characters or base64 of 32 bytes."""
    if len(raw) == KEY_BYTES:
        return raw
    text = raw.strip()
    try:
        if len(text) == 2 * KEY_BYTES:
            return binascii.unhexlify(text)
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != KEY_BYTES:
        raise ConfigurationError(
            f"master key {source} is not 32 bytes (raw, 64 hex characters or base64)"
        )
    return decoded


def check_private(path: Path) -> None:
    """Refuse a key file that its group or others can read or write."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"master key {path} has mode {stat.S_IMODE(mode):04o}; "
            f"it must be readable by its owner only (chmod 600 {path})"
        )


def read_key_file(path: Path) -> MasterKey:
    try:
        check_private(path)
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigurationError(f"master key file {path} does not exist") from exc
    except PermissionError as exc:
        raise ConfigurationError(f"master key file {path} is not readable") from exc
    return MasterKey(decode_key(raw, path), path)


def write_key_file(path: Path, material: bytes) -> None:
    """Create `path` with mode 0600 and durable contents; never overwrite.

    The key is written and fsynced under a temporary name, then linked into place:
    a process killed at any instant leaves either no `path` or the whole key in it,
    never a torn file that the next start would refuse.
    """
    partial = path.with_name(path.name + ".tmp")
    partial.unlink(missing_ok=True)  # a leftover of a write that was killed
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, encode_key(material))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(partial, path)  # fails if `path` exists: no overwrite, atomically
    finally:
        partial.unlink()
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """Makes a rename, link or unlink in `directory` durable."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class KeySource:
    """Where the key came from decides whether the daemon may rewrite it."""

    path: Path
    managed: bool  # True: the generated key in the state dir, which rotate-key replaces


def locate_key(
    state_dir: Path, key_file: Path | None, env: dict[str, str] | None = None
) -> KeySource:
    env = dict(os.environ) if env is None else env
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / CREDENTIAL_NAME).exists():
        return KeySource(Path(creds) / CREDENTIAL_NAME, managed=False)
    if key_file is not None:
        return KeySource(key_file, managed=False)
    return KeySource(state_dir / STATE_KEY_NAME, managed=True)
