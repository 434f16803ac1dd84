"""The Prometheus endpoint's HTTP server, with a bound on what clients can hold.

prometheus_client's own server starts a thread per connection and keeps it while
the connection is open: 1,500 idle connections made 1,500 threads. Here at most
`MAX_CONNECTIONS` are served at once (one more is closed at once, unanswered: a
scraper retries at its next interval), and a connection that sends nothing for
`IDLE_TIMEOUT_S` is dropped, so its slot comes back.
"""

from __future__ import annotations

import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

MAX_CONNECTIONS = 16
IDLE_TIMEOUT_S = 10.0


class _QuietHandler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT_S  # the socket's: an idle client gives its slot back

    def log_message(self, format: str, *args: Any) -> None:
        """No line per scrape."""


class BoundedWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    max_connections = MAX_CONNECTIONS
    request_queue_size = 128  # the listen backlog: over it, clients wait for a retransmit

    def server_activate(self) -> None:
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self.refused = 0
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve(app: Any, host: str, port: int) -> tuple[BoundedWSGIServer, threading.Thread]:
    """`app` on host:port from a daemon thread; `server.shutdown()` stops it."""

    class Server(BoundedWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = make_server(host, port, app, Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server, thread
