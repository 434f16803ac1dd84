"""The systemd notification protocol, with the standard library only.

systemd (`Type=notify`) hands the service a datagram socket in
`$NOTIFY_SOCKET`; a name starting with `@` is an abstract socket. Each
message is newline-separated `KEY=VALUE` lines: READY=1 when we serve,
STATUS= for `systemctl status`, RELOADING=1/READY=1 around a reload,
STOPPING=1 on the way out, WATCHDOG=1 as the keep-alive. Outside systemd
the variable is unset and every call is a cheap no-op, so the daemon needs no
"am I under systemd" branches.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("ctsd.ops")


def _socket_address(name: str) -> str:
    return "\0" + name[1:] if name.startswith("@") else name


class Notifier:
    """Sends notifications to the service manager, if there is one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.address = env.get("NOTIFY_SOCKET", "")
        self._sock: socket.socket | None = None
        if self.address:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.setblocking(False)  # never stall the event loop on a full queue
            self._sock = sock

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *lines: str) -> bool:
        """Send one message; False when there is no manager or the send failed."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(lines).encode(), _socket_address(self.address))
        except OSError as exc:  # the manager went away or is busy: not our failure
            log.debug("sd_notify failed", extra={"error": str(exc)})
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def reloading(self) -> bool:
        # systemd >= 253 wants the clock reading that ties RELOADING=1 to its READY=1.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds within which systemd expects WATCHDOG=1, or None when it does not.

    `WATCHDOG_PID`, when set, names the process the watchdog is meant for: a
    child that inherited the variables must not answer for its parent.
    """
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1_000_000
