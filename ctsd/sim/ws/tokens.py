"""Credentials for user data streams that a venue issues over REST.

Binance USDⓈ-M: `POST /fapi/v1/listenKey` returns a listenKey valid 60 minutes
(the account's active key, extended, if it has one), `PUT` extends it, `DELETE`
ends it; a stream on an expired key gets `listenKeyExpired` and no more events.
Binance margin: `POST /sapi/v1/userListenToken` returns a new listenToken for the
cross account (or one isolated pair's) valid `validity` ms (24 hours at most), which
the WebSocket API's `userDataStream.subscribe.listenToken` takes.
Kraken: `GetWebSocketsToken` returns a token to be used within 15 minutes, which
does not expire while a subscription made with it is maintained. Both live here
so that the REST endpoint that issues them and the WebSocket endpoint that checks
them share one store per server.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from ctsd.sim.clock import Clock
from ctsd.sim.ws.config import WsConfig

LISTEN_KEY_VALIDITY_S = 3600.0
KRAKEN_TOKEN_VALIDITY_S = 900.0


@dataclass(slots=True)
class StreamToken:
    value: str
    api_key: str
    kind: str
    expires_at: float
    """Monotonic time (simulator clock) after which the token is refused."""
    in_use: int = 0
    """Connections using it; a Kraken token in use does not expire."""
    scope: str = ""
    """What the token grants beyond its account: a Binance listenToken's margin wallet."""

    def valid(self, now: float) -> bool:
        return self.in_use > 0 or now < self.expires_at


class StreamTokens:
    """Issued listenKeys and tokens of one server."""

    def __init__(self, clock: Clock, config: WsConfig) -> None:
        self._clock = clock
        self._config = config
        self._tokens: dict[str, StreamToken] = {}

    def _now(self) -> float:
        return self._clock.monotonic()

    def listen_key(self, api_key: str, kind: str) -> StreamToken:
        """The account's active listenKey of `kind`, extended, or a new one."""
        now = self._now()
        validity = self._config.seconds(LISTEN_KEY_VALIDITY_S)
        token = self.active(api_key, kind)
        if token is not None:
            token.expires_at = now + validity
            return token
        value = secrets.token_urlsafe(48)[:64]
        token = StreamToken(value, api_key, kind, now + validity)
        self._tokens[value] = token
        return token

    def active(self, api_key: str, kind: str) -> StreamToken | None:
        """The account's valid token of `kind`, if any."""
        now = self._now()
        for token in self._tokens.values():
            if token.api_key == api_key and token.kind == kind and token.valid(now):
                return token
        return None

    def keep_alive(self, value: str, kind: str) -> StreamToken | None:
        token = self.get(value, kind)
        if token is not None:
            token.expires_at = self._now() + self._config.seconds(LISTEN_KEY_VALIDITY_S)
        return token

    def listen_token(self, api_key: str, kind: str, scope: str, validity_s: float,
                     ) -> StreamToken:
        """A new token of `kind` for `scope`, valid `validity_s` (not scaled: the venue
        takes the validity from the request); expired tokens are dropped as it is made,
        so a client minting one a day keeps no history."""
        now = self._now()
        for stale in [v for v, t in self._tokens.items() if not t.valid(now)]:
            del self._tokens[stale]
        value = base64.b64encode(secrets.token_bytes(52)).decode()
        token = StreamToken(value, api_key, kind, now + validity_s, scope=scope)
        self._tokens[value] = token
        return token

    def kraken_token(self, api_key: str) -> StreamToken:
        value = base64.b64encode(secrets.token_bytes(32)).decode()
        token = StreamToken(value, api_key, "kraken",
                            self._now() + self._config.seconds(KRAKEN_TOKEN_VALIDITY_S))
        self._tokens[value] = token
        return token

    def get(self, value: str, kind: str) -> StreamToken | None:
        """The valid token `value` of `kind`, or None (unknown, other kind or expired)."""
        token = self._tokens.get(value)
        if token is None or token.kind != kind or not token.valid(self._now()):
            return None
        return token

    def expired(self, token: StreamToken) -> bool:
        return not token.valid(self._now())

    def revoke(self, value: str) -> bool:
        return self._tokens.pop(value, None) is not None

    def reset(self) -> None:
        self._tokens.clear()
