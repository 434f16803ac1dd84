"""The daemon's directories and files: created private, refused when others can touch them.

Whoever can write the state directory can plant a `master-key` of their own before
the first start (and later read every secret sealed under it) or swap the
database; whoever can write the runtime directory can replace the socket and
receive what the CLI sends, secrets included. So before anything is opened:

- the umask becomes 077, and the state and runtime directories are created 0700;
- a directory in use must belong to this user and be writable by nobody else;
- a file in use (database, WAL, SHM, lock, master key, a pending rotation's key)
  must not be a symbolic link or anything but a regular file, must belong to this
  user, and must be writable by nobody else; a database file others may read is
  made owner-only (the key file is refused instead: it may have been read).

Any breach is a `ConfigurationError`: exit 78 with one line naming the path and
the fix.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ctsd.errors import ConfigurationError

DATABASE_FILES = ("ctsd.db", "ctsd.db-wal", "ctsd.db-shm", "ctsd.lock")
KEY_FILES = ("master-key", "master-key.new")
OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH
OTHERS_ANY = stat.S_IRWXG | stat.S_IRWXO


def prepare(state_dir: Path, runtime_dirs: Iterable[Path] = ()) -> None:
    """Private dirs and files for a daemon (or `rotate-key`) on `state_dir`."""
    os.umask(0o077)  # every file we create (db, wal, key, socket) is owner-only
    for directory in (state_dir, *runtime_dirs):
        private_dir(directory)
    for name in DATABASE_FILES:
        private_file(state_dir / name, tighten=True)
    for name in KEY_FILES:
        private_file(state_dir / name, tighten=False)


def private_dir(path: Path) -> None:
    """Create `path` 0700 (with its parents) or check the one that is there."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise ConfigurationError(f"cannot create directory {path}: {exc.strerror}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigurationError(f"{path} is not a directory")
    _owned(path, info)
    if info.st_mode & OTHERS_WRITE:
        raise ConfigurationError(
            f"directory {path} has mode {stat.S_IMODE(info.st_mode):04o}: others could "
            f"replace what ctsd keeps there (chmod go-w {path})")


def private_file(path: Path, *, tighten: bool) -> None:
    """Check a file the daemon uses if it exists; `tighten` makes a readable one 0600."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise ConfigurationError(f"{path} is a symbolic link; ctsd uses only its own files "
                                 "there (replace the link with the file)")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigurationError(f"{path} is not a regular file")
    _owned(path, info)
    mode = stat.S_IMODE(info.st_mode)
    if mode & OTHERS_WRITE or (mode & OTHERS_ANY and not tighten):
        raise ConfigurationError(
            f"{path} has mode {mode:04o}: it must be the owner's only (chmod 600 {path}, "
            "after checking nobody else changed it)")
    if mode & OTHERS_ANY:
        os.chmod(path, 0o600)


def _owned(path: Path, info: os.stat_result) -> None:
    if info.st_uid != os.geteuid():
        raise ConfigurationError(
            f"{path} belongs to uid {info.st_uid}, not to the user ctsd runs as "
            f"({os.geteuid()}); it must be ctsd's own")
