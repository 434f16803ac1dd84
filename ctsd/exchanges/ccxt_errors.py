"""ccxt's exceptions become domain errors here, and only here.

Whatever ccxt raises leaves a call as one `ctsd.errors.ExchangeFailure`
subclass (`ExchangeFailure.of` picks it from the failure's class and, for
order calls, its `OrderRejection`), so connection tests, engines and the API
all read the same exception; nothing translates it a second time.

The class of a failure is decided in this order: the exchange's own error
code, where the venue declares it (ccxt's class is sometimes wrong: Binance's
-2015 becomes DDoSProtection once a key has worked, OKX's 50120 a bare
ExchangeError, Bybit's "service restarting" 10016 a plain ExchangeError);
then ccxt's exception class; then, for the TypeError/KeyError/ValueError that
ccxt's parsers raise on garbage, "malformed answer". Messages are redacted of
every credential value and of URL query strings (signatures, timestamps)
before they leave, because ccxt puts the request URL and the exchange's body
(Bybit's echoes the API key) into its messages.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence

from ctsd.errors import ExchangeFailure, FailureClass, OrderRejection


def malformed(what: str) -> ExchangeFailure:
    return ExchangeFailure.of(FailureClass.EXCHANGE_ERROR, f"malformed answer: {what}")


# --- reading exchange error codes ------------------------------------------------------

_JSON_CODE = re.compile(r'"(?:code|retCode|sCode|ret_code)"\s*:\s*"?(-?\d+)"?')
_KRAKEN_CODE = re.compile(r"\b(E[A-Z][A-Za-z]*:[A-Za-z][A-Za-z ]*[A-Za-z])")
_QUERY = re.compile(r"(https?://[^\s?\"']+)\?[^\s\"']*")
_MAX_MESSAGE = 300


def error_codes(message: str) -> list[str]:
    """Every exchange error code in a ccxt message: JSON `code`/`retCode`/`sCode`
    fields (Binance, Bybit, OKX) and Kraken's `EAPI:Invalid key` strings."""
    return _JSON_CODE.findall(message) + _KRAKEN_CODE.findall(message)


def redact(message: str, secrets: Sequence[str]) -> str:
    """`message` without credential values or query strings, cut to a readable length."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        message = message.replace(secret, "****")
    message = _QUERY.sub(r"\1?…", message)
    return message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE - 1] + "…"


# --- the translation -------------------------------------------------------------------

_PARSER_ERRORS = (TypeError, KeyError, ValueError, AttributeError, IndexError)


def _by_ccxt_class(exc: BaseException) -> FailureClass | None:
    import ccxt  # already loaded by whoever raised a ccxt exception

    table: tuple[tuple[type[BaseException], FailureClass], ...] = (
        (ccxt.InvalidNonce, FailureClass.CLOCK_SKEW),
        (ccxt.PermissionDenied, FailureClass.PERMISSION),
        (ccxt.AccountSuspended, FailureClass.PERMISSION),
        (ccxt.AuthenticationError, FailureClass.AUTHENTICATION),
        (ccxt.RateLimitExceeded, FailureClass.RATE_LIMITED),
        (ccxt.DDoSProtection, FailureClass.RATE_LIMITED),
        (ccxt.OnMaintenance, FailureClass.MAINTENANCE),
        (ccxt.RequestTimeout, FailureClass.TIMEOUT),
        (ccxt.NetworkError, FailureClass.NETWORK),
        (ccxt.BadResponse, FailureClass.EXCHANGE_ERROR),
        (ccxt.BaseError, FailureClass.EXCHANGE_ERROR),
    )
    for cls, failure_class in table:
        if isinstance(exc, cls):
            return failure_class
    if isinstance(exc, TimeoutError):
        return FailureClass.TIMEOUT
    return None


def _rejection(exc: BaseException) -> OrderRejection | None:
    import ccxt

    table: tuple[tuple[type[BaseException], OrderRejection], ...] = (
        (ccxt.InsufficientFunds, OrderRejection.INSUFFICIENT_FUNDS),
        (ccxt.OrderNotFound, OrderRejection.ORDER_NOT_FOUND),
        (ccxt.InvalidOrder, OrderRejection.INVALID_ORDER),
        (ccxt.BadSymbol, OrderRejection.BAD_SYMBOL),
        (ccxt.NotSupported, OrderRejection.NOT_SUPPORTED),
    )
    return next((r for cls, r in table if isinstance(exc, cls)), None)


def classify(
    exc: BaseException, codes: Mapping[str, FailureClass],
    codes_after_auth: Mapping[str, FailureClass] = {}, *, authenticated: bool = False,
) -> tuple[FailureClass, str | None] | None:
    """(class, exchange code) of a ccxt exception; None for exceptions ccxt did not raise."""
    found = error_codes(str(exc)) if isinstance(exc, Exception) else []
    for code in found:
        if authenticated and code in codes_after_auth:
            return codes_after_auth[code], code
        if code in codes:
            return codes[code], code
    failure_class = _by_ccxt_class(exc)
    if failure_class is None:
        return None
    return failure_class, found[0] if found else None


@contextlib.contextmanager
def translated(
    exchange: str, *, secrets: Sequence[str] = (), codes: Mapping[str, FailureClass] = {},
    codes_after_auth: Mapping[str, FailureClass] = {}, authenticated: bool = False,
) -> Iterator[None]:
    """Run a ccxt call; whatever it raises leaves as an `ExchangeFailure`.

    Exceptions that are neither ccxt's nor a parser's (our own bugs, cancellation)
    pass through untouched.
    """
    try:
        yield
    except ExchangeFailure:
        raise
    except _PARSER_ERRORS as exc:
        if _by_ccxt_class(exc) is not None:  # a ccxt error that is also a ValueError
            raise _translate(exchange, exc, secrets, codes, codes_after_auth,
                             authenticated) from exc
        detail = redact(f"{type(exc).__name__}: {exc}", secrets)
        raise malformed(f"{exchange} answer could not be parsed ({detail})") from exc
    except Exception as exc:
        if _by_ccxt_class(exc) is None:
            raise
        raise _translate(exchange, exc, secrets, codes, codes_after_auth,
                         authenticated) from exc


def _translate(
    exchange: str, exc: BaseException, secrets: Sequence[str],
    codes: Mapping[str, FailureClass], codes_after_auth: Mapping[str, FailureClass],
    authenticated: bool,
) -> ExchangeFailure:
    found = classify(exc, codes, codes_after_auth, authenticated=authenticated)
    assert found is not None
    failure_class, code = found
    text = str(exc).strip() or type(exc).__name__
    if not text.startswith(exchange):
        text = f"{exchange}: {text}"
    return ExchangeFailure.of(failure_class, redact(text, secrets), code=code,
                             rejection=_rejection(exc))

