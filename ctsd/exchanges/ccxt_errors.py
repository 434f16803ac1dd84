"""ccxt's exceptions become domain errors here, and only here.

Whatever ccxt raises leaves a call as one `ctsd.errors.ExchangeFailure`
subclass (`ExchangeFailure.of` picks it from the failure's class and, for
order calls, its `OrderRejection`), so connection tests, engines and the API
all read the same exception; nothing translates it a second time.

A request the venue does not serve (HTTP 404, or a code the venue declares for
"unknown path/method": Bybit's 10017, Kraken's `EGeneral:Unknown method`) is an
exchange error naming the endpoint, refused as NOT_SUPPORTED: ccxt raises
ExchangeNotAvailable (a NetworkError) for a 404, which would read as a network
failure to retry, and the cause (a market the account or venue does not offer,
a wrong base_url) would hide behind retries. The request gate
(`ctsd.exchanges.throttle`) notes on each exception which request it answered
(`note_answer`), because ccxt's message does not always carry the URL.

Otherwise the class of a failure is decided in this order: the exchange's own error
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
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

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


# --- which request failed ----------------------------------------------------------------

_ANSWERED = "ctsd_answered"
NOT_SERVED_STATUS = frozenset({404})
"""HTTP statuses that say the venue has no such endpoint (for this host)."""


@dataclass(frozen=True)
class Answered:
    """The HTTP request an exception answered: where it went and the status it got."""

    method: str
    url: str
    status: int | None

    @property
    def endpoint(self) -> str:
        """`GET /sapi/v1/margin/account`: method and path, without host or query."""
        return f"{self.method.upper()} {urlsplit(self.url).path or '/'}"


def note_answer(exc: BaseException, method: str, url: str, status: int | None) -> None:
    """Remember on `exc` which request it answered (the request gate calls this)."""
    if method and url:
        with contextlib.suppress(AttributeError):  # an exception class with __slots__
            setattr(exc, _ANSWERED, Answered(method, url, status))


def answered(exc: BaseException) -> Answered | None:
    seen = getattr(exc, _ANSWERED, None)
    return seen if isinstance(seen, Answered) else None


def _not_served(exc: BaseException, codes: Mapping[str, FailureClass],
                unsupported: Collection[str]) -> Answered | None:
    """The request, where the venue said it has no such endpoint: a declared "unknown
    path" code, or a 404 that carries no code the venue declares for something else."""
    seen = answered(exc)
    if seen is None:
        return None
    found = error_codes(str(exc))
    if any(code in unsupported for code in found):
        return seen
    if seen.status in NOT_SERVED_STATUS and not any(code in codes for code in found):
        return seen
    return None


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


@dataclass(frozen=True)
class _Venue:
    exchange: str
    secrets: Sequence[str]
    codes: Mapping[str, FailureClass]
    codes_after_auth: Mapping[str, FailureClass]
    unsupported: Collection[str]
    authenticated: bool


@contextlib.contextmanager
def translated(
    exchange: str, *, secrets: Sequence[str] = (), codes: Mapping[str, FailureClass] = {},
    codes_after_auth: Mapping[str, FailureClass] = {}, authenticated: bool = False,
    unsupported: Collection[str] = (),
) -> Iterator[None]:
    """Run a ccxt call; whatever it raises leaves as an `ExchangeFailure`.

    `unsupported`: the venue's error codes for "no such path or method".
    Exceptions that are neither ccxt's nor a parser's (our own bugs, cancellation)
    pass through untouched.
    """
    venue = _Venue(exchange, secrets, codes, codes_after_auth, unsupported, authenticated)
    try:
        yield
    except ExchangeFailure:
        raise
    except _PARSER_ERRORS as exc:
        if _by_ccxt_class(exc) is not None:  # a ccxt error that is also a ValueError
            raise _translate(venue, exc) from exc
        detail = redact(f"{type(exc).__name__}: {exc}", secrets)
        raise malformed(f"{exchange} answer could not be parsed ({detail})") from exc
    except Exception as exc:
        if _by_ccxt_class(exc) is None:
            raise
        raise _translate(venue, exc) from exc


def _translate(venue: _Venue, exc: BaseException) -> ExchangeFailure:
    exchange, secrets = venue.exchange, venue.secrets
    seen = _not_served(exc, venue.codes, venue.unsupported)
    if seen is not None:
        return not_served(exchange, seen, error_codes(str(exc)))
    found = classify(exc, venue.codes, venue.codes_after_auth,
                     authenticated=venue.authenticated)
    assert found is not None
    failure_class, code = found
    text = str(exc).strip() or type(exc).__name__
    if not text.startswith(exchange):
        text = f"{exchange}: {text}"
    return ExchangeFailure.of(failure_class, redact(text, secrets), code=code,
                             rejection=_rejection(exc))



def not_served(exchange: str, seen: Answered, codes: Sequence[str] = ()) -> ExchangeFailure:
    """The venue has no such endpoint (for this host, account or market): an exchange
    error naming it, refused as not supported — retrying cannot help."""
    said = ", ".join(filter(None, (f"HTTP {seen.status}" if seen.status else "",
                                   f"code {codes[0]}" if codes else "")))
    return ExchangeFailure.of(
        FailureClass.EXCHANGE_ERROR,
        f"{exchange} does not serve {seen.endpoint} ({said}): the endpoint is not "
        "supported for this market or host",
        code=codes[0] if codes else None, rejection=OrderRejection.NOT_SUPPORTED)
