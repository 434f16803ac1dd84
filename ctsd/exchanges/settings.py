"""`[exchanges.<id>]`: per-exchange settings the exchange layer applies to every client.

    [exchanges.binance]
    base_url = "http://127.0.0.1:9000/binance"   # every REST URL's scheme and host replaced

`base_url` sends one exchange's requests elsewhere (a proxy, a recording
server, the simulator): `https://api.binance.com/api/v3/time` becomes
`<base_url>/api/v3/time`. The simulator (`ctsd sim`) serves each exchange
under `/<id>`, so `endpoint = "<simulator URL>"` is short for
`base_url = "<simulator URL>/<id>"`, and the daemon's `--sim-endpoint URL`
flag sets it for every exchange. The factory applies `base_url` through
`ctsd.exchanges.ccxt_internals.rebase_urls`; nothing here knows the
simulator beyond that path convention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ctsd.errors import ConfigurationError
from ctsd.settings import read_table, setting

SHORTHANDS = ("endpoint",)
"""Keys of an `[exchanges.<id>]` table that are not fields but set one (see module doc)."""


def http_url(raw: Any, name: str) -> str:
    parts = urlsplit(str(raw))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{name}: {raw!r} is not an http(s)://HOST[:PORT] URL")
    return str(raw).rstrip("/")


@dataclass(frozen=True)
class ExchangeSettings:
    base_url: str | None = setting(None, check=http_url)
    """Replaces the scheme and host of every REST URL of the exchange; None: its own."""

    @classmethod
    def at_simulator(cls, simulator_url: str, exchange: str) -> ExchangeSettings:
        """The exchange as the simulator at `simulator_url` serves it (under `/<id>`)."""
        return cls(base_url=f"{simulator_url.rstrip('/')}/{exchange}")

    @property
    def origin(self) -> str | None:
        """`scheme://host[:port]` of `base_url`: where requests go, for reachability checks."""
        if self.base_url is None:
            return None
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    def rewrite(self, url: str) -> str:
        """`url` (an exchange's own) moved onto `base_url`, its path kept.

        A WebSocket URL (`wss://HOST/PATH`) goes to the same place with the ws scheme;
        where a venue serves one path on two hosts, the host becomes a path segment
        (`WS_HOST_SEGMENTS`, the layout `ctsd sim` serves)."""
        assert self.base_url is not None
        parts = urlsplit(url)
        if parts.scheme in ("ws", "wss"):
            base = "ws" + self.base_url[len("http"):]
            return base + WS_HOST_SEGMENTS.get(parts.netloc, "") + parts.path
        return self.base_url + parts.path


WS_HOST_SEGMENTS: Mapping[str, str] = {
    "stream.binance.com:9443": "/stream",
    "fstream.binance.com": "/fstream",
    "ws.kraken.com": "/ws",
    "ws-auth.kraken.com": "/ws-auth",
}
"""WebSocket hosts of one venue that share paths: under a `base_url` each gets its own
segment (tests/exchanges check this against the simulator's `url_overrides`)."""


def read_exchange_tables(tables: Any, known: Sequence[str], where: str,
                         ) -> dict[str, ExchangeSettings]:
    """The `[exchanges.<id>]` tables of a config file, each naming a supported exchange."""
    if not isinstance(tables, Mapping):
        raise ConfigurationError(f"{where}: [exchanges] must hold [exchanges.<id>] tables")
    keys = {*ExchangeSettings.__dataclass_fields__, *SHORTHANDS}
    found: dict[str, ExchangeSettings] = {}
    for exchange, table in tables.items():
        if exchange not in known or not isinstance(table, Mapping) or set(table) - keys:
            raise ConfigurationError(
                f"{where}: [exchanges.{exchange}] must be one of {', '.join(known)} "
                f"with only {' or '.join(f'`{k}`' for k in sorted(keys))} keys")
        found[exchange] = read_exchange_table(exchange, table)
    return found


def read_exchange_table(exchange: str, table: Mapping[str, Any]) -> ExchangeSettings:
    values = dict(table)
    if "endpoint" in values:
        simulator = http_url(values.pop("endpoint"), f"exchanges.{exchange}.endpoint")
        values.setdefault("base_url", ExchangeSettings.at_simulator(simulator, exchange).base_url)
    return read_table(ExchangeSettings, values, f"exchanges.{exchange}")


def with_flags(found: Mapping[str, ExchangeSettings], known: Sequence[str],
               sim_endpoint: str | None, endpoint_flags: Sequence[str],
               ) -> dict[str, ExchangeSettings]:
    """`--sim-endpoint URL` (every exchange) and `--exchange-endpoint ID=URL` (one), both
    simulator URLs, over the file's tables."""
    result = dict(found)
    at = ExchangeSettings.at_simulator
    if sim_endpoint:
        url = http_url(sim_endpoint, "--sim-endpoint")
        result.update({exchange: at(url, exchange) for exchange in known})
    for flag in endpoint_flags:
        exchange, sep, url = str(flag).partition("=")
        if not sep or exchange not in known:
            raise ConfigurationError(
                f"--exchange-endpoint {flag!r}: expected ID=URL with ID one of {', '.join(known)}")
        result[exchange] = at(http_url(url, "--exchange-endpoint"), exchange)
    return result

