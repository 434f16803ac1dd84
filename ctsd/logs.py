"""Structured log lines on stderr, for journald: logfmt by default, JSON on request.

Secrets stay out by construction, not by care at each call site: the one
handler carries `RedactingFilter`, which replaces any field whose name says
"secret" (`SECRET_FIELDS`) and any protobuf message or bytes value before a
formatter sees it; request messages therefore cannot be logged even by
mistake. Then the whole record -- message, fields, traceback -- goes through
`ctsd.redaction`, which knows the credentials the daemon holds in every
spelling and the header names that carry them. `request_id` (a context
variable set by the access-log interceptor) is stamped on every line logged
while an RPC runs.

ccxt logs each request with its headers at DEBUG: its logger stays at INFO
whatever the daemon's level unless `log_ccxt_debug` asks for it, and even
then its lines pass the same redaction.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from ctsd.redaction import SECRETS, KnownSecrets

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

REDACTED = "[redacted]"  # ctsd.redaction.REDACTED: the same mark for names and values
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
    """Rewrites records in place: secret-named fields and message objects go, known
    credentials and the values of credential headers are redacted everywhere in the
    record, ids arrive."""

    def __init__(self, secrets: KnownSecrets = SECRETS) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self._secrets.redact
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                record.__dict__[key] = self._field(key, value)
        if isinstance(record.args, tuple):
            record.args = tuple(_safe_value(a) for a in record.args)
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info:
            record.__dict__["error"] = redact(logging.Formatter().formatException(
                record.exc_info))
            record.exc_info, record.exc_text = None, None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        current = request_id.get()
        if current is not None and "request_id" not in record.__dict__:
            record.request_id = current
        return True

    def _field(self, name: str, value: object) -> object:
        """A field as it may be written: by its name, then by every text in it."""
        if _is_secret_name(name):
            return REDACTED
        value = _safe_value(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return {str(k): self._field(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._field(name, v) for v in value]
        return self._secrets.redact(str(value))


class ClientGoneFilter(logging.Filter):
    """grpc logs an answer it could not send because the client had already gone (its
    deadline passed, it cancelled) as an ERROR with a traceback from its core. Nothing
    failed on our side: it becomes one debug line."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage() if record.name.startswith("grpc") else ""
        if "ExecuteBatchError raised in core" in text:
            method = text[text.find("[") + 1:text.rfind("]")]
            record.msg, record.args = "answer not delivered: the client had gone", None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info, record.exc_text = None, None
            record.__dict__["method"] = method
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields: dict[str, object] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
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


def configure(level: str, fmt: str, stream: TextIO | None = None,
              ccxt_debug: bool = False) -> None:
    """One handler on the root logger, writing to `stream` (default: stderr)."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    handler.addFilter(ClientGoneFilter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level, ccxt_debug)


# Libraries whose debug lines trace every query or loop lookup, or every request with
# its headers (ccxt): info at most.
CHATTY_LIBRARIES = ("aiosqlite", "grpc._cython.cygrpc", "asyncio", "ccxt")


def set_level(level: str, ccxt_debug: bool = False) -> None:
    """Changes the level of every logger that inherits the root's (SIGHUP reload);
    `ccxt_debug` lets ccxt's request lines through at debug (still redacted)."""
    logging.getLogger().setLevel(level.upper())
    floor = max(logging.getLevelName(level.upper()), logging.INFO)
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(floor)
    if ccxt_debug:
        logging.getLogger("ccxt").setLevel(level.upper())
