"""Ownership and mode attacks by one unprivileged user on a daemon run as another.

The daemon runs as uid DAEMON_UID (via `setpriv`), the attacker is ATTACKER_UID.
Each attack prepares what a careless operator or another local user could leave:
directories others may write, files planted by the other user, symbolic links
where files belong, a world-writable runtime directory. Each must end in exit 78
and one `ctsd:` line, before anything is read or written. A clean first start under
umask 000 must leave every directory 0700 and every file 0600, and the attacker
must then be unable to touch the socket or plant a file. Needs root (to switch
users); skipped otherwise, saying so.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.robustness.tally import Tally
from tests.support.daemon_process import DaemonProcess, remove_tree, short_tempdir

DAEMON_UID = 4101
ATTACKER_UID = 4102
EX_CONFIG = 78
UMASK_000 = "import os, sys; os.umask(0); os.execv(sys.argv[1], sys.argv[1:])"
SYSTEM_PYTHON = Path("/usr/bin/python3.11")
"""An interpreter every user can run (this venv's may live under a private home); the
venv's packages and the checkout are put on its path."""
REPO = Path(__file__).resolve().parents[2]
SITE = Path(sys.prefix) / "lib" / "python3.11" / "site-packages"



pytestmark = [pytest.mark.long, pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or not SYSTEM_PYTHON.exists(),
    reason="needs root and setpriv to run the daemon and the attacker as other users")]


def as_user(uid: int, *command: str) -> list[str]:
    path = os.pathsep.join(map(str, (REPO, REPO / "clients" / "python", SITE)))
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
            "env", f"PYTHONPATH={path}", *command]


class ForeignDaemon(DaemonProcess):
    """The real daemon, started as DAEMON_UID with umask 000, its socket in `<root>/run`
    (the daemon user's own runtime dir unless an attack made it first)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        if not (root / "run").exists():
            owned(root / "run", DAEMON_UID, 0o700, directory=True)
        self.socket = root / "run" / "ctsd.sock"
        self.address = f"unix:{self.socket}"

    def command(self) -> list[str]:
        _, *rest = super().command()
        return as_user(DAEMON_UID, str(SYSTEM_PYTHON), "-c", UMASK_000, str(SYSTEM_PYTHON),
                       *rest)


@pytest.fixture
def root() -> Iterator[Path]:
    made = short_tempdir()
    os.chmod(made, 0o755)  # the users can reach what is inside
    try:
        yield made
    finally:
        remove_tree(made)


def owned(path: Path, uid: int, mode: int, *, directory: bool = False,
          content: bytes = b"x") -> Path:
    if directory:
        path.mkdir(exist_ok=True)
    else:
        path.write_bytes(content)
    os.chown(path, uid, uid)
    os.chmod(path, mode)
    return path


def state(root: Path) -> Path:
    return owned(root / "state", DAEMON_UID, 0o700, directory=True)


def run_refused(root: Path) -> tuple[int, list[str]]:
    daemon = ForeignDaemon(root)
    done = daemon.run_refused()
    return done.returncode, [line for line in done.stderr.splitlines()
                             if line.startswith("ctsd: ")]


def symlinked(target_name: str) -> Callable[[Path], None]:
    def attack(root: Path) -> None:
        elsewhere = owned(root / "elsewhere", DAEMON_UID, 0o600)
        (state(root) / target_name).symlink_to(elsewhere)
    return attack


ATTACKS: dict[str, Callable[[Path], object]] = {
    "state dir others may write": lambda r: owned(r / "state", DAEMON_UID, 0o777, directory=True),
    "state dir of another user": lambda r: owned(r / "state", ATTACKER_UID, 0o755,
                                                 directory=True),
    "master key planted by another user": lambda r: owned(state(r) / "master-key",
                                                          ATTACKER_UID, 0o600,
                                                          content=b"a" * 64 + b"\n"),
    "database others may write": lambda r: owned(state(r) / "ctsd.db", DAEMON_UID, 0o666,
                                                 content=b""),
    "WAL of another user": lambda r: owned(state(r) / "ctsd.db-wal", ATTACKER_UID, 0o600),
    "database is a symlink": symlinked("ctsd.db"),
    "master key is a symlink": symlinked("master-key"),
    "rotation key of another user": lambda r: owned(state(r) / "master-key.new", ATTACKER_UID,
                                                    0o600),
    "runtime dir others may write": lambda r: (state(r), owned(
        r / "run", DAEMON_UID, 0o1777, directory=True)),
    "runtime dir of another user": lambda r: (state(r), owned(
        r / "run", ATTACKER_UID, 0o755, directory=True)),
}


def test_every_attack_is_refused_before_anything_is_used(root: Path) -> None:
    tally = Tally("state dir: ownership and mode attacks")
    for name, attack in ATTACKS.items():
        case = owned(root / name.replace(" ", "-"), DAEMON_UID, 0o755, directory=True)
        attack(case)
        code, lines = run_refused(case)
        tally.tried += 1
        ok = code == EX_CONFIG and len(lines) == 1
        tally.survived += ok
        tally.lost += not ok
        tally.notes.append(f"{name}: exit {code} {lines[0][:110] if lines else 'no line'}")
    tally.report()
    assert tally.lost == 0, tally.notes


def test_a_first_start_under_umask_000_is_private_and_the_other_user_is_locked_out(
        root: Path) -> None:
    os.chown(root, DAEMON_UID, DAEMON_UID)
    daemon = ForeignDaemon(root)
    daemon.start()  # creates the state dir itself
    try:
        files = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in daemon.state_dir.iterdir()}
        socket_mode = stat.S_IMODE(daemon.socket.lstat().st_mode)
        intrusions = [
            ("replace the socket", f"import os; os.unlink({str(daemon.socket)!r})"),
            ("plant a key", f"open({str(daemon.state_dir / 'master-key.new')!r}, 'w')"),
            ("read the database", f"open({str(daemon.state_dir / 'ctsd.db')!r}).read()"),
        ]
        refused = {name: subprocess.run(as_user(ATTACKER_UID, str(SYSTEM_PYTHON), "-c", code),
                                        capture_output=True, timeout=30).returncode != 0
                   for name, code in intrusions}
        healthy = daemon.health()
    finally:
        daemon.stop()
    assert stat.S_IMODE(daemon.state_dir.stat().st_mode) == 0o700
    assert files and all(mode == 0o600 for mode in files.values()), files
    assert {"ctsd.db", "master-key", "ctsd.lock"} <= set(files)
    assert socket_mode == 0o600 and healthy == 1  # SERVING
    assert all(refused.values()), refused
