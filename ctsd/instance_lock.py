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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise ConfigurationError(
                f"state directory {self.path.parent} is in use by another ctsd process"
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {holder}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
