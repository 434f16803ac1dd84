"""One log line and one metrics sample per RPC: request id, method, code, latency.

The outermost interceptor, so it also sees calls that authentication
refused. It logs names and numbers only, never a request or response
message or metadata value. The request id is always the daemon's own, so no
client can make its calls pass for another's in the log; a client's
`x-request-id` (when a short plain token) is logged beside it as
`client_request_id`, for correlation. The id is put in the
`ctsd.logs.request_id` context variable so every line logged during the call
carries it. A call a guard refused and logs itself (at a bounded rate) keeps its
access line at debug: a flood of refusals does not become a flood of lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator

import grpc

from ctsd import logs
from ctsd.api import handlers
from ctsd.api.handlers import Context, WrappingInterceptor
from ctsd.ops.metrics import RpcMetrics

log = logging.getLogger("ctsd.access")

REQUEST_ID_KEY = "x-request-id"
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Probes call these every few seconds; their lines are debug unless they fail.
QUIET_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def client_request_id(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and _CLIENT_ID.fullmatch(value):
            return value
    return None


def _code_name(code: grpc.StatusCode | None) -> str:
    return "OK" if code is None else code.name


def status_of(exc: BaseException | None, context: Context) -> str:
    """The status the client will see for a call that ended with `exc` (None: returned)."""
    if exc is None or isinstance(exc, grpc.aio.AbortError):
        return _code_name(context.code())
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return "UNKNOWN"  # what grpc answers for an exception nobody translated


class AccessLog:
    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        rid = secrets.token_hex(8)
        given = client_request_id(context)
        token = logs.request_id.set(rid)
        quietly = handlers.refused_quietly.set(False)
        # Read while the call is alive: context.peer() on a call the client has
        # cancelled can touch freed grpc core state and crash the process (SIGSEGV).
        peer = context.peer()
        started = time.perf_counter()
        ended: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            ended = exc
            raise
        finally:
            elapsed = time.perf_counter() - started
            code = status_of(ended, context)
            self._metrics.handled(method, code, elapsed)
            quiet = (code == "OK" and method.startswith(QUIET_PREFIXES)
                     ) or handlers.refused_quietly.get()
            level = logging.DEBUG if quiet else logging.INFO
            if log.isEnabledFor(level):
                fields = {"request_id": rid, "method": method, "code": code,
                          "latency_ms": round(elapsed * 1000, 3), "peer": peer}
                if given is not None:
                    fields["client_request_id"] = given
                log.log(level, "rpc", extra=fields)
            with contextlib.suppress(ValueError):  # a generator closed from another context
                logs.request_id.reset(token)
                handlers.refused_quietly.reset(quietly)

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        return WrappingInterceptor(self.around)
