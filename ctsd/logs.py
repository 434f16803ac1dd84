"""Structured log lines on stderr, for journald: logfmt by default, JSON on request.

Secrets stay out by construction, not by care at each call site: the one
handler carries `RedactingFilter`, which replaces any field whose name says
"secret" (`SECRET_FIELDS`) and any protobuf message or bytes value before a
formatter sees it; request messages therefore cannot be logged even by
mistake. `request_id` (a context variable set by the access-log interceptor)
is stamped on every line logged while an RPC runs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

REDACTED = "[redacted]"
SECRET_FIELDS = frozenset(
    {
        "api_key", "api_secret", "secret", "passphrase", "password", "token", "auth_token",
        "authorization", "bearer", "credentials", "master_key", "key_material", "material",
        "private_key", "plaintext", "request", "metadata",
    }
)  # fmt: skip

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_FIELDS or lowered.endswith(("_secret", "_token", "_password"))


def _safe_value(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    # Protobuf messages (requests, credentials) are never formatted, only named.
    if hasattr(value, "DESCRIPTOR") and hasattr(value, "SerializeToString"):
        return f"<{type(value).__name__}>"
    return value


class RedactingFilter(logging.Filter):
    """Rewrites records in place: secret-named fields and message objects go, ids arrive."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in list(vars(record).items()):
            if key in _STANDARD:
                continue
            record.__dict__[key] = REDACTED if _is_secret_name(key) else _safe_value(value)
        if isinstance(record.args, tuple):
            record.args = tuple(_safe_value(a) for a in record.args)
        current = request_id.get()
        if current is not None and "request_id" not in record.__dict__:
            record.request_id = current
        return True


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields: dict[str, object] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
    if record.exc_info:
        fields["error"] = logging.Formatter().formatException(record.exc_info)
    return fields


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in _fields(record).items():
            text = str(value)
            if not text or any(c in text for c in ' ="\n'):
                text = json.dumps(text)
            parts.append(f"{key}={text}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


def configure(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """One handler on the root logger, writing to `stream` (default: stderr)."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)


# Libraries whose debug lines trace every query or loop lookup: info at most.
CHATTY_LIBRARIES = ("aiosqlite", "grpc._cython.cygrpc", "asyncio")


def set_level(level: str) -> None:
    """Changes the level of every logger that inherits the root's (SIGHUP reload)."""
    logging.getLogger().setLevel(level.upper())
    floor = max(logging.getLevelName(level.upper()), logging.INFO)
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(floor)
