"""Where the CLI finds the daemon when neither `--addr` nor `CTS_ADDR` says.

The daemon picks its socket from the environment systemd (or the user's
session) gives it; the CLI runs in a different environment, so it tries the
same places in the same order and takes the first socket that exists.
"""

from __future__ import annotations

import os
from pathlib import Path

SOCKET_NAME = "ctsd.sock"
SYSTEM_RUNTIME_DIR = Path("/run/ctsd")


def default_state_dir(env: dict[str, str] | None = None) -> Path:
    """The daemon's default state directory: `$STATE_DIRECTORY`, else ~/.local/state/ctsd."""
    env = dict(os.environ) if env is None else env
    if env.get("STATE_DIRECTORY"):
        # systemd may pass several colon-separated directories; the first is ours.
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    return Path(env.get("HOME", str(Path.home()))) / ".local" / "state" / "ctsd"


def socket_candidates(env: dict[str, str] | None = None) -> list[Path]:
    """Socket paths in the order the daemon prefers them."""
    env = dict(os.environ) if env is None else env
    found: list[Path] = []
    if env.get("RUNTIME_DIRECTORY"):
        found.append(Path(env["RUNTIME_DIRECTORY"].split(":")[0]) / SOCKET_NAME)
    if env.get("XDG_RUNTIME_DIR"):
        found.append(Path(env["XDG_RUNTIME_DIR"]) / "ctsd" / SOCKET_NAME)
    found.append(SYSTEM_RUNTIME_DIR / SOCKET_NAME)
    found.append(default_state_dir(env) / SOCKET_NAME)
    return found


def default_address(env: dict[str, str] | None = None) -> str:
    """`CTS_ADDR`, else the first existing default socket, else the first candidate."""
    env = dict(os.environ) if env is None else env
    if env.get("CTS_ADDR"):
        return env["CTS_ADDR"]
    candidates = socket_candidates(env)
    for path in candidates:
        if path.exists():
            return f"unix:{path}"
    return f"unix:{candidates[0]}"
