"""How a failure becomes one line on stderr and an exit code.

Two kinds of failure reach the user:

- `UsageError`: the command line is wrong in a way argparse cannot see (no
  secret source and no terminal to prompt on, nothing to change). Exit 2,
  like argparse's own errors, so scripts can tell "fix the command" from
  "the daemon said no".
- `grpc.RpcError`: the daemon (or the transport) refused. Exit 1, with the
  canonical code, the message, and every field violation from the
  `google.rpc.BadRequest` detail, so a script's log names the bad field.
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

EXIT_OK = 0
EXIT_RPC_ERROR = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A command line that parsed but cannot be run as given (exit 2)."""


def describe_rpc_error(err: grpc.RpcError, address: str) -> str:
    """Render a failed call as `error: CODE: message (field: problem; ...)`.

    When the daemon answered, its rich status supplies the field violations.
    When nothing answered (no status from the server, code UNAVAILABLE), the
    line names the address, because the fix is there, not in the request.
    """
    code = _code(err)
    details = _details(err)
    status = _rich_status(err)
    if status is None and code is grpc.StatusCode.UNAVAILABLE:
        message = (
            f"cannot reach ctsd at {address} (is the daemon running? "
            f"set --addr or CTS_ADDR): {details}"
        )
        return _one_line(f"error: {code.name}: {message}")
    message = status.message if status is not None and status.message else details
    # The daemon may already spell the violations out in its message; repeat
    # only what the message does not say, so the line stays short.
    violations = [v for v in _field_violations(status) if v not in message]
    suffix = " (" + "; ".join(violations) + ")" if violations else ""
    return _one_line(f"error: {code.name}: {message}{suffix}")


def _code(err: grpc.RpcError) -> grpc.StatusCode:
    """The status code; RpcError itself declares none, the Call it also is does."""
    code = getattr(err, "code", None)
    value = code() if callable(code) else None
    return value if isinstance(value, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _details(err: grpc.RpcError) -> str:
    details = getattr(err, "details", None)
    value = details() if callable(details) else None
    return value if isinstance(value, str) and value else str(err)


def _rich_status(err: grpc.RpcError) -> status_pb2.Status | None:
    """The `google.rpc.Status` the daemon attached, if any.

    `from_call` raises ValueError when the trailer disagrees with the call's
    code; a malformed trailer must not hide the plain error, so it yields None.
    """
    if not hasattr(err, "trailing_metadata"):
        return None
    try:
        return rpc_status.from_call(err)
    except ValueError:
        return None


def _field_violations(status: status_pb2.Status | None) -> list[str]:
    """`field: description` for every BadRequest violation in the status."""
    if status is None:
        return []
    found: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            found.extend(f"{v.field}: {v.description}" for v in bad_request.field_violations)
    return found


def _one_line(text: str) -> str:
    """Collapse newlines: one error is one line, easy to grep in a log."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())
