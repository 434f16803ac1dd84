"""One process at a time owns a state directory (the daemon, or `ctsd rotate-key`)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ctsd.errors import ConfigurationError

LOCK_NAME = "ctsd.lock"


class InstanceLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, holder: str) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:  # a read-only or missing state dir is the operator's to fix
            raise ConfigurationError(f"cannot open lock file {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise ConfigurationError(
                f"state directory {self.path.parent} is in use by another ctsd process"
            ) from exc
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {holder}\n".encode())
        except OSError as exc:  # a full disk
            os.close(fd)
            raise ConfigurationError(f"cannot write lock file {self.path}: {exc.strerror}") from exc
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
