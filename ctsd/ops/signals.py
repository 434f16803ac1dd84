"""SIGTERM, SIGINT and SIGHUP delivered to the event loop, and never fatal on the way out.

Why not `loop.add_signal_handler`: when the loop closes it puts every signal it
watched back to its default action, and the default action of SIGTERM is death.
The daemon has stopped by then, but the interpreter still has threads to join
and modules to tear down; a second SIGTERM in that window (a supervisor
signalling again, `kill` typed twice, a test harness stopping what it thinks is
hung) turned a clean exit 0 into "killed by SIGTERM". So the signals are routed
here the way asyncio does it (a wakeup fd the loop reads, the signal numbers
dispatched on the loop, never inside a handler), and `close()` leaves them
ignored, not default: the interpreter's own finalisation keeps an ignored
signal ignored, so no instant of the exit is left where a stop signal kills.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable, Mapping
from types import FrameType


def _wake_only(signum: int, frame: FrameType | None) -> None:
    """A Python-level handler, so that the C handler writes the number to the wakeup fd;
    the work happens on the loop, in `_dispatch`."""


class LoopSignals:
    """Owns the three signals from `install()` to `close()`; one per process."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 handlers: Mapping[signal.Signals, Callable[[], None]]) -> None:
        self._loop = loop
        self._handlers = dict(handlers)
        self._by_number = {int(sig): handler for sig, handler in handlers.items()}
        self._reader, self._writer = socket.socketpair()
        self._installed = False

    def install(self) -> None:
        for sock in (self._reader, self._writer):
            sock.setblocking(False)
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._loop.add_reader(self._reader.fileno(), self._dispatch)
        for sig in self._handlers:
            signal.signal(sig, _wake_only)
        self._installed = True

    def close(self) -> None:
        """The daemon is done: from here to the process's end these signals are ignored."""
        if not self._installed:
            return
        self._installed = False
        for sig in self._handlers:
            signal.signal(sig, signal.SIG_IGN)
        signal.set_wakeup_fd(-1)
        self._loop.remove_reader(self._reader.fileno())
        self._reader.close()
        self._writer.close()

    def _dispatch(self) -> None:
        try:
            numbers = self._reader.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        for number in numbers:
            handler = self._by_number.get(number)
            if handler is not None:
                handler()
