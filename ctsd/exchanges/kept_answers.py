"""The venue's last answer to each probe request, kept on the client so a probe asks once.

A probe (`ClientProfile.permissions`, `account_uid`) reads the venue's answer to
one implicit-API request; ccxt sometimes makes that request itself (bybit's first
balance request), so the client keeps the last answer of each probe method and the
probe reads it instead of asking the venue again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any


def keep_answers(exchange: Any, methods: Iterable[str]) -> dict[str, Any]:
    """Wrap the ccxt implicit-API `methods` of `exchange` so their last answers are kept.

    Probes read the kept answer instead of asking again: ccxt's bybit asks
    `/v5/user/query-api` itself on the first balance request (`is_unified_enabled`)
    and keeps only two flags of it; the key's permissions and UID are in the same answer.
    """
    kept: dict[str, Any] = {}

    def keeping(name: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def kept_call(*args: Any, **kwargs: Any) -> Any:
            kept[name] = answer = await call(*args, **kwargs)
            return answer

        return kept_call

    for name in set(methods):
        setattr(exchange, name, keeping(name, getattr(exchange, name)))
    return kept
