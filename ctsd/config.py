"""Daemon settings: embedded defaults, an optional TOML file, then flags.

Frozen and typed, so a setting read anywhere is the one validated here. The
file's tables: `[daemon]` (listen, paths, logs, metrics), `[tls]`, `[auth]`,
`[batch]`, `[engines]`, `[exchanges.<id>]` and `[rate_limits]`;
`systemd/ctsd.toml.example` shows every key. TLS material and
the bearer token may instead come from systemd credentials (`LoadCredential=`
names in `CREDENTIAL_NAMES`), used when the file names no path.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cts.address import SOCKET_NAME, default_state_dir
from ctsd.errors import ConfigurationError
from ctsd.ratelimit.config import RateLimitOverrides

if TYPE_CHECKING:
    from ctsd.exchanges.registry import ExchangeRegistry

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("logfmt", "json")
OPEN_SERVICES = ("health", "reflection")
SOCKET_MODES = (0o600, 0o660)
CREDENTIAL_NAMES = {  # setting -> systemd credential name
    "tls_cert_file": "tls-cert",
    "tls_key_file": "tls-key",
    "tls_client_ca_file": "tls-client-ca",
    "auth_token_file": "auth-token",
}


@dataclass(frozen=True)
class ListenAddress:
    """Either a Unix socket path or a TCP host and port."""

    unix_path: Path | None = None
    host: str = ""
    port: int = 0

    @property
    def grpc_target(self) -> str:
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return self.unix_path is None and _is_loopback(self.host)

    def __str__(self) -> str:
        return self.grpc_target if self.unix_path else f"tcp://{self.grpc_target}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ConfigurationError(f"{what}: {text!r} is not HOST:PORT")
    return host, int(port_text)


def parse_listen(text: str, secured: bool = False) -> ListenAddress:
    """`unix:PATH` or `tcp://HOST:PORT`; beyond loopback only when `secured`.

    `secured` means TLS and an authentication method are configured: a
    non-loopback port without both would hand the keys to the network.
    """
    if text.startswith("unix:"):
        path = text.removeprefix("unix:").removeprefix("//")
        if not path:
            raise ConfigurationError("listen: unix: needs a path")
        return ListenAddress(unix_path=Path(path))
    if text.startswith("tcp://"):
        host, port = _host_port(text.removeprefix("tcp://"), "listen")
        if not secured and not _is_loopback(host):
            raise ConfigurationError(
                f"listen: {host} is not a loopback address; TCP beyond loopback needs TLS "
                "([tls] cert_file and key_file) and authentication ([auth] token_file or "
                "[tls] client_ca_file)"
            )
        return ListenAddress(host=host, port=port)
    raise ConfigurationError(f"listen: {text!r} must start with unix: or tcp://")


def parse_metrics_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (a `tcp://` prefix is tolerated) for the Prometheus endpoint."""
    return _host_port(text.removeprefix("tcp://"), "metrics_listen")


def default_socket(state_dir: Path, env: dict[str, str]) -> Path:
    if env.get("RUNTIME_DIRECTORY"):
        return Path(env["RUNTIME_DIRECTORY"].split(":")[0]) / SOCKET_NAME
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "ctsd" / SOCKET_NAME
    return state_dir / SOCKET_NAME


@dataclass(frozen=True)
class TlsConfig:
    """Server certificate and key; a client CA turns on mTLS (client certs required)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


@dataclass(frozen=True)
class AuthConfig:
    """Who may call: bearer token holders and/or holders of a certificate from the CA."""

    token_file: Path | None = None
    client_names: tuple[str, ...] = ()  # with mTLS: allowed certificate CNs/DNS names
    open_services: frozenset[str] = frozenset()  # "health", "reflection": no auth needed


@dataclass(frozen=True)
class DaemonConfig:
    state_dir: Path
    listen: ListenAddress
    master_key_file: Path | None = None
    log_level: str = "info"
    log_format: str = "logfmt"
    grace_seconds: float = 4.0
    calls_per_second_per_peer: float = 5000.0
    """The flood guard (`ctsd.api.request_rate`): 0 turns it off."""
    metrics_listen: tuple[str, int] | None = None
    socket_mode: int = 0o600
    socket_group: str | None = None
    tls: TlsConfig | None = None
    auth: AuthConfig = field(default_factory=AuthConfig)
    exchange_endpoints: tuple[tuple[str, str], ...] = ()  # (exchange id, base URL)
    batch: BatchConfig = field(default_factory=lambda: BatchConfig())
    rate_limits: RateLimitOverrides = field(default_factory=RateLimitOverrides)
    engines: EnginesConfig = field(default_factory=lambda: EnginesConfig())

    @property
    def authenticates(self) -> bool:
        mtls = self.tls is not None and self.tls.client_ca_file is not None
        return self.auth.token_file is not None or mtls


_TABLES = {
    "daemon": {
        "listen", "state_dir", "master_key_file", "log_level", "log_format",
        "grace_seconds", "metrics_listen", "socket_mode", "socket_group",
        "calls_per_second_per_peer",
    },
    "tls": {"cert_file", "key_file", "client_ca_file"},
    "auth": {"token_file", "client_names", "open_services"},
    "batch": {"concurrency", "item_timeout_s", "max_attempts"},
    "engines": {"cancel_orders_on_shutdown"},
}  # fmt: skip


def _read_file(path: Path) -> dict[str, Any]:
    """The file's tables flattened: `[tls] cert_file` becomes `tls_cert_file`."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"cannot read config {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config {path} is not valid TOML: {exc}") from exc
    exchanges = data.pop("exchanges", {})  # [exchanges.<id>] tables: see _exchange_tables
    rate_limits = data.pop("rate_limits", {})  # [rate_limits] and [rate_limits.<id>.<name>]
    unknown = sorted(set(data) - set(_TABLES))
    flat: dict[str, Any] = {
        "exchange_endpoints": _exchange_tables(exchanges, path),
        "rate_limits": _rate_limit_tables(rate_limits, path),
    }
    for table, keys in _TABLES.items():
        section = data.get(table, {})
        if not isinstance(section, dict):
            raise ConfigurationError(f"config {path}: [{table}] must be a table")
        unknown += sorted(f"{table}.{k}" for k in set(section) - keys)
        prefix = "" if table == "daemon" else f"{table}_"
        flat.update({prefix + k: v for k, v in section.items()})
    if unknown:
        raise ConfigurationError(f"config {path}: unknown settings {unknown}")
    return flat


def _path(settings: dict[str, Any], key: str, env: dict[str, str]) -> Path | None:
    """An explicit path wins; else the systemd credential of that name, if loaded."""
    if settings.get(key):
        return Path(str(settings[key])).expanduser()
    creds = env.get("CREDENTIALS_DIRECTORY")
    name = CREDENTIAL_NAMES.get(key)
    if creds and name and (Path(creds) / name).is_file():
        return Path(creds) / name
    return None


def _choice(settings: dict[str, Any], key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = str(settings.get(key, default)).lower()
    if value not in allowed:
        raise ConfigurationError(f"{key} must be one of {', '.join(allowed)}")
    return value


def _tls(settings: dict[str, Any], env: dict[str, str]) -> TlsConfig | None:
    cert, key = _path(settings, "tls_cert_file", env), _path(settings, "tls_key_file", env)
    client_ca = _path(settings, "tls_client_ca_file", env)
    if cert is None and key is None:
        if client_ca is not None:
            raise ConfigurationError("tls client_ca_file needs cert_file and key_file")
        return None
    if cert is None or key is None:
        raise ConfigurationError("tls needs both cert_file and key_file")
    return TlsConfig(cert, key, client_ca)


def _auth(settings: dict[str, Any], env: dict[str, str], tls: TlsConfig | None) -> AuthConfig:
    names = settings.get("auth_client_names", [])
    opened = settings.get("auth_open_services", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ConfigurationError("auth client_names must be a list of names")
    if not isinstance(opened, list) or not set(opened) <= set(OPEN_SERVICES):
        raise ConfigurationError(f"auth open_services may list only {', '.join(OPEN_SERVICES)}")
    if names and (tls is None or tls.client_ca_file is None):
        raise ConfigurationError("auth client_names needs mTLS ([tls] client_ca_file)")
    return AuthConfig(_path(settings, "auth_token_file", env), tuple(names), frozenset(opened))


def _grace(settings: dict[str, Any]) -> float:
    value = settings.get("grace_seconds", 4.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 60:
        raise ConfigurationError("grace_seconds must be a number from 0 to 60")
    return float(value)


def _calls_per_second(settings: dict[str, Any]) -> float:
    value = settings.get("calls_per_second_per_peer", 5000.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1e6:
        raise ConfigurationError(
            "calls_per_second_per_peer must be a number from 0 (no limit) to 1000000")
    return float(value)


def _socket_mode(settings: dict[str, Any]) -> int:
    value = settings.get("socket_mode", "0600")
    mode = int(value, 8) if isinstance(value, str) and value.isdigit() else -1
    if mode not in SOCKET_MODES:
        raise ConfigurationError('socket_mode must be "0600" or "0660" (owner, then group)')
    return mode


def load_config(
    config_file: Path | None,
    overrides: dict[str, Any],
    env: dict[str, str] | None = None,
) -> DaemonConfig:
    """Defaults, then the file's tables, then non-None `overrides` (flat keys)."""
    env = dict(os.environ) if env is None else env
    settings: dict[str, Any] = _read_file(config_file) if config_file else {}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    state_dir = Path(settings.get("state_dir") or default_state_dir(env)).expanduser()
    tls = _tls(settings, env)
    config = DaemonConfig(state_dir=state_dir, listen=ListenAddress(), tls=tls)
    config = replace(config, auth=_auth(settings, env, tls))
    listen_text = settings.get("listen")
    secured = tls is not None and config.authenticates
    listen = (
        parse_listen(str(listen_text), secured)
        if listen_text
        else ListenAddress(unix_path=default_socket(state_dir, env))
    )
    metrics = settings.get("metrics_listen")
    return replace(
        config,
        listen=listen,
        master_key_file=_path(settings, "master_key_file", env),
        log_level=_choice(settings, "log_level", config.log_level, LOG_LEVELS),
        log_format=_choice(settings, "log_format", config.log_format, LOG_FORMATS),
        grace_seconds=_grace(settings),
        calls_per_second_per_peer=_calls_per_second(settings),
        metrics_listen=parse_metrics_listen(str(metrics)) if metrics else None,
        socket_mode=_socket_mode(settings),
        socket_group=str(settings["socket_group"]) if settings.get("socket_group") else None,
        exchange_endpoints=_endpoints(settings),
        batch=_batch(settings),
        rate_limits=settings.get("rate_limits") or RateLimitOverrides(),
        engines=_engines(settings),
    )


# --- exchange endpoints and connection-test batches ---------------------------------
# `[exchanges.<id>] endpoint = "http://127.0.0.1:PORT"` points one exchange at
# another base URL (the simulator); `--sim-endpoint URL` points every exchange
# there, `--exchange-endpoint ID=URL` one (flags win over the file).


@dataclass(frozen=True)
class BatchConfig:
    """Defaults of BatchTestConnections (SPEC: concurrency 3, 30 s per item)."""

    concurrency: int = 3
    item_timeout_s: float = 30.0
    max_attempts: int = 3


@dataclass(frozen=True)
class EnginesConfig:
    """What the daemon does with running engines; the engine manager gets plain values."""

    cancel_orders_on_shutdown: bool = False
    """True: a shutdown cancels each engine's open orders before it stops. False: they rest
    on the venue and the engine reconciles them when it resumes after the restart."""


def _exchange_ids() -> list[str]:
    return _registry().ids()


def _registry() -> ExchangeRegistry:
    from ctsd.exchanges.registry import ExchangeRegistry

    return ExchangeRegistry.default()


def _check_url(what: str, url: object) -> str:
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{what}: {url!r} is not an http(s)://HOST[:PORT] URL")
    return str(url).rstrip("/")


def _exchange_tables(tables: object, path: Path) -> dict[str, str]:
    if not isinstance(tables, dict):
        raise ConfigurationError(f"config {path}: [exchanges] must hold [exchanges.<id>] tables")
    known = _exchange_ids()
    found: dict[str, str] = {}
    for exchange, table in tables.items():
        if exchange not in known or not isinstance(table, dict) or set(table) - {"endpoint"}:
            raise ConfigurationError(
                f"config {path}: [exchanges.{exchange}] must be one of {', '.join(known)} "
                "with only an `endpoint` key"
            )
        if "endpoint" in table:
            found[exchange] = _check_url(f"exchanges.{exchange}.endpoint", table["endpoint"])
    return found


def _rate_limit_tables(table: object, path: Path) -> RateLimitOverrides:
    """`[rate_limits]`, every override naming a limit its exchange declares: a misspelt
    name would otherwise be ignored, and the limit the operator meant to lower kept."""
    if not isinstance(table, dict):
        raise ConfigurationError(f"config {path}: [rate_limits] must be a table")
    overrides = RateLimitOverrides.from_mapping(table)
    registry = _registry()
    for exchange, name in overrides.limits:
        spec = registry.get(exchange)
        if spec is None:
            raise ConfigurationError(f"config {path}: [rate_limits.{exchange}.{name}]: "
                                     f"exchange must be one of {', '.join(registry.ids())}")
        names = [limit.name for limit in spec.rate_limits]
        if name not in names:
            raise ConfigurationError(f"config {path}: [rate_limits.{exchange}.{name}]: "
                                     f"{exchange} limits are {', '.join(names)}")
    return overrides


def _endpoints(settings: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    found = dict(settings.get("exchange_endpoints") or {})
    if settings.get("sim_endpoint"):
        url = _check_url("--sim-endpoint", settings["sim_endpoint"])
        found.update({exchange: url for exchange in _exchange_ids()})
    for flag in settings.get("exchange_endpoint_flags") or ():
        exchange, sep, url = str(flag).partition("=")
        if not sep or exchange not in _exchange_ids():
            raise ConfigurationError(
                f"--exchange-endpoint {flag!r}: expected ID=URL with ID one of "
                f"{', '.join(_exchange_ids())}"
            )
        found[exchange] = _check_url("--exchange-endpoint", url)
    return tuple(sorted(found.items()))


def _batch(settings: dict[str, Any]) -> BatchConfig:
    config = BatchConfig()
    concurrency = settings.get("batch_concurrency", config.concurrency)
    timeout = settings.get("batch_item_timeout_s", config.item_timeout_s)
    attempts = settings.get("batch_max_attempts", config.max_attempts)
    if not _is_int_in(concurrency, 1, 32):
        raise ConfigurationError("batch concurrency must be an integer from 1 to 32")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 600:
        raise ConfigurationError("batch item_timeout_s must be a number of seconds, 0 to 600")
    if not _is_int_in(attempts, 1, 10):
        raise ConfigurationError("batch max_attempts must be an integer from 1 to 10")
    return BatchConfig(int(concurrency), float(timeout), int(attempts))


def _engines(settings: dict[str, Any]) -> EnginesConfig:
    cancel = settings.get("engines_cancel_orders_on_shutdown", False)
    if not isinstance(cancel, bool):
        raise ConfigurationError("engines cancel_orders_on_shutdown must be true or false")
    return EnginesConfig(cancel_orders_on_shutdown=cancel)


def _is_int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
