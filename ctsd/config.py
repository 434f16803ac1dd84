"""Daemon settings: embedded defaults, an optional TOML file, then flags.

One frozen dataclass per table of the file, each field declared once with
its default, its check and whether SIGHUP applies it (`ctsd.settings`):

    [daemon]             DaemonConfig's own fields (listen, paths, logs, metrics, ...)
    [tls]                TlsConfig            [auth]     AuthConfig
    [batch]              BatchConfig          [engines]  EnginesConfig
    [exchanges.<id>]     ExchangeSettings     (ctsd.exchanges.settings)
    [rate_limits]        RateLimitOverrides   (ctsd.ratelimit.config)
    [fleet]              FleetSettings        (ctsd.ratelimit.config)
    [store]              StoreSettings        (ctsd.store.store_url)

`systemd/ctsd.toml.example` shows every key (a test holds it to that). A
flag overrides the file's key of the same name: `--log-level` is
`[daemon] log_level`, `--tls-cert-file` is `[tls] cert_file`. TLS material
and the bearer token may instead come from systemd credentials
(`LoadCredential=` names in `CREDENTIAL_NAMES`), used when nothing names a
path.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cts.address import SOCKET_NAME, default_state_dir
from ctsd.connections.checks.settings import BatchSettings
from ctsd.connections.predefined import PredefinedConnection, read_predefined
from ctsd.errors import ConfigurationError
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.exchanges.settings import ExchangeSettings, read_exchange_tables, with_flags
from ctsd.ratelimit.config import FleetSettings, RateLimitOverrides
from ctsd.settings import (
    SECTION,
    boolean,
    integer,
    number,
    one_of,
    read_table,
    reloaded,
    section,
    setting,
    text,
)
from ctsd.store.store_url import StoreSettings

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("logfmt", "json")
OPEN_SERVICES = ("health", "reflection")
SOCKET_MODES = (0o600, 0o660)
CREDENTIAL_NAMES = {  # setting -> systemd credential name
    "tls.cert_file": "tls-cert",
    "tls.key_file": "tls-key",
    "tls.client_ca_file": "tls-client-ca",
    "auth.token_file": "auth-token",
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


def _check_metrics_exposure(config: DaemonConfig) -> None:
    if config.metrics_listen is None or config.metrics_public:
        return
    host, port = config.metrics_listen
    if not _is_loopback(host):
        raise ConfigurationError(
            f"metrics_listen {host}:{port} is reachable beyond this host, and the metrics "
            "endpoint has no authentication; listen on 127.0.0.1 or set metrics_public = true "
            "(--metrics-public) to mean it")


def default_socket(state_dir: Path, env: Mapping[str, str]) -> Path:
    if env.get("RUNTIME_DIRECTORY"):
        return Path(env["RUNTIME_DIRECTORY"].split(":")[0]) / SOCKET_NAME
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "ctsd" / SOCKET_NAME
    return state_dir / SOCKET_NAME


# --- checks of [daemon] values ------------------------------------------------------------


def _path(raw: Any, _name: str) -> Path | None:
    return Path(str(raw)).expanduser() if raw else None


def _metrics_listen(raw: Any, _name: str) -> tuple[str, int] | None:
    return parse_metrics_listen(str(raw)) if raw else None


def _socket_mode(raw: Any, name: str) -> int:
    mode = int(raw, 8) if isinstance(raw, str) and raw.isdigit() else -1
    if mode not in SOCKET_MODES:
        raise ConfigurationError(f'{name} must be "0600" or "0660" (owner, then group)')
    return mode


def _names(raw: Any, name: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(n, str) and n for n in raw):
        raise ConfigurationError(f"{name} must be a list of names")
    return tuple(raw)


def _open_services(raw: Any, name: str) -> frozenset[str]:
    if not isinstance(raw, list) or not set(raw) <= set(OPEN_SERVICES):
        raise ConfigurationError(f"{name} may list only {', '.join(OPEN_SERVICES)}")
    return frozenset(raw)


# --- the tables -------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsConfig:
    """[tls]: server certificate and key; a client CA turns on mTLS (client certs required)."""

    cert_file: Path = setting(check=_path)
    key_file: Path = setting(check=_path)
    client_ca_file: Path | None = setting(None, check=_path)

    @classmethod
    def read(cls, table: Mapping[str, Any], env: Mapping[str, str]) -> TlsConfig | None:
        cert, key = (_credential_path(table, "tls", k, env) for k in ("cert_file", "key_file"))
        client_ca = _credential_path(table, "tls", "client_ca_file", env)
        if cert is None and key is None:
            if client_ca is not None:
                raise ConfigurationError("tls client_ca_file needs cert_file and key_file")
            return None
        if cert is None or key is None:
            raise ConfigurationError("tls needs both cert_file and key_file")
        return cls(cert, key, client_ca)


@dataclass(frozen=True)
class AuthConfig:
    """[auth]: who may call — bearer token holders and/or holders of a certificate from the CA."""

    token_file: Path | None = setting(None, check=_path)
    client_names: tuple[str, ...] = setting((), check=_names)
    """With mTLS: the certificate CNs/DNS names allowed to call."""
    open_services: frozenset[str] = setting(frozenset(), check=_open_services)
    """"health", "reflection": reachable without credentials."""

    @classmethod
    def read(cls, table: Mapping[str, Any], env: Mapping[str, str],
             tls: TlsConfig | None) -> AuthConfig:
        auth = read_table(cls, table, "auth",
                          token_file=_credential_path(table, "auth", "token_file", env))
        if auth.client_names and (tls is None or tls.client_ca_file is None):
            raise ConfigurationError("auth client_names needs mTLS ([tls] client_ca_file)")
        return auth


_BATCH = BatchSettings()


@dataclass(frozen=True)
class BatchConfig:
    """[batch]: defaults of BatchTestConnections (SPEC: concurrency 3, 30 s per item)."""

    concurrency: int = setting(_BATCH.concurrency, check=integer(1, 32))
    item_timeout_s: float = setting(
        _BATCH.item_timeout_s,
        check=number(0, 600, low_open=True, what="a number of seconds, 0 to 600"))
    max_attempts: int = setting(_BATCH.retry.max_attempts, check=integer(1, 10))


@dataclass(frozen=True)
class EnginesConfig:
    """[engines]: what the daemon does with running engines."""

    cancel_orders_on_shutdown: bool = setting(False, check=boolean)
    """True: a shutdown cancels each engine's open orders before it stops. False: they rest
    on the venue and the engine reconciles them when it resumes after the restart."""


@dataclass(frozen=True)
class DaemonConfig:
    """The whole file: [daemon]'s settings are its own fields, the other tables sections."""

    state_dir: Path = setting()
    listen: ListenAddress = setting()
    master_key_file: Path | None = setting(None, check=_path)
    log_level: str = setting("info", reload=True, check=one_of(*LOG_LEVELS))
    log_format: str = setting("logfmt", reload=True, check=one_of(*LOG_FORMATS))
    log_ccxt_debug: bool = setting(False, reload=True, check=boolean)
    """ccxt's request and response lines at debug (redacted like every line); otherwise
    its logger stays at info whatever `log_level` says."""
    grace_seconds: float = setting(4.0, check=number(0, 60))
    calls_per_second_per_peer: float = setting(
        5000.0, check=number(0, 1e6, what="a number from 0 (no limit) to 1000000"))
    """The flood guard (`ctsd.api.request_rate`): 0 turns it off."""
    metrics_listen: tuple[str, int] | None = setting(None, check=_metrics_listen)
    metrics_public: bool = setting(False, check=boolean)
    """True lets `metrics_listen` name an address beyond loopback: the endpoint has no
    authentication, and its figures (connection ids, request rates) are not for everyone."""
    socket_mode: int = setting(0o600, check=_socket_mode)
    socket_group: str | None = setting(None, check=text)
    tls: TlsConfig | None = section(reload=False)
    auth: AuthConfig = section(AuthConfig)
    batch: BatchConfig = section(BatchConfig)
    engines: EnginesConfig = section(EnginesConfig)
    exchanges: Mapping[str, ExchangeSettings] = section(
        lambda: MappingProxyType({}), reload=False)
    rate_limits: RateLimitOverrides = section(RateLimitOverrides)
    connections: tuple[PredefinedConnection, ...] = section(tuple, reload=True)
    """`[[connections]]` (`ctsd.connections.predefined`): applied at start and on SIGHUP."""
    fleet: FleetSettings = section(FleetSettings, reload=False)
    store: StoreSettings = section(StoreSettings, reload=False)

    @property
    def authenticates(self) -> bool:
        mtls = self.tls is not None and self.tls.client_ca_file is not None
        return self.auth.token_file is not None or mtls

    def reloaded(self, new: DaemonConfig) -> tuple[DaemonConfig, list[str]]:
        """This config with what a reload applies from `new` (each field says), and the
        settings that changed but take effect only after a restart."""
        return reloaded(self, new)

    @classmethod
    def read(cls, tables: Mapping[str, Any], env: Mapping[str, str]) -> DaemonConfig:
        daemon = tables.get("daemon", {})
        state_dir = Path(daemon.get("state_dir") or default_state_dir(dict(env))).expanduser()
        tls = TlsConfig.read(tables.get("tls", {}), env)
        auth = AuthConfig.read(tables.get("auth", {}), env, tls)
        secured = tls is not None and (auth.token_file is not None or
                                       tls.client_ca_file is not None)
        listen = (parse_listen(str(daemon["listen"]), secured) if daemon.get("listen")
                  else ListenAddress(unix_path=default_socket(state_dir, env)))
        config = read_table(
            cls, daemon, "daemon", state_dir=state_dir, listen=listen, tls=tls, auth=auth,
            batch=read_table(BatchConfig, tables.get("batch", {}), "batch"),
            engines=read_table(EnginesConfig, tables.get("engines", {}), "engines"),
            exchanges=MappingProxyType(dict(tables.get("exchanges", {}))),
            rate_limits=tables.get("rate_limits") or RateLimitOverrides(),
            connections=read_predefined(tables.get("connections")),
            fleet=FleetSettings.read(tables.get("fleet", {}), env),
            store=read_table(StoreSettings, tables.get("store", {}), "store"),
        )
        _check_metrics_exposure(config)
        return config


TABLES: Mapping[str, type[Any]] = {
    "daemon": DaemonConfig, "tls": TlsConfig, "auth": AuthConfig, "batch": BatchConfig,
    "engines": EnginesConfig, "exchanges": ExchangeSettings, "rate_limits": RateLimitOverrides,
    "connections": PredefinedConnection,
    "fleet": FleetSettings, "store": StoreSettings,
}  # fmt: skip


def _keys(table: str) -> set[str]:
    return {f.name for f in fields(TABLES[table]) if not f.metadata.get(SECTION)}


FLAGS: Mapping[str, tuple[str, str]] = {
    (key if table == "daemon" else f"{table}_{key}"): (table, key)
    for table in ("daemon", "tls", "auth", "batch", "engines") for key in _keys(table)
}
"""Flat override names (`tls_cert_file`, as argparse spells `--tls-cert-file`) → table, key."""


def _credential_path(table: Mapping[str, Any], name: str, key: str,
                     env: Mapping[str, str]) -> Path | None:
    """An explicit path wins; else the systemd credential of that name, if loaded."""
    if table.get(key):
        return Path(str(table[key])).expanduser()
    creds = env.get("CREDENTIALS_DIRECTORY")
    credential = CREDENTIAL_NAMES.get(f"{name}.{key}")
    if creds and credential and (Path(creds) / credential).is_file():
        return Path(creds) / credential
    return None


def _read_file(path: Path, registry: ExchangeRegistry) -> dict[str, Any]:
    """The file's tables, each checked for unknown keys; exchanges and rate limits parsed."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"cannot read config {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config {path} is not valid TOML: {exc}") from exc
    where = f"config {path}"
    unknown = sorted(set(data) - set(TABLES))
    for table, keys in data.items():
        if table in ("exchanges", "rate_limits", "connections") or table not in TABLES:
            continue
        if not isinstance(keys, dict):
            raise ConfigurationError(f"{where}: [{table}] must be a table")
        unknown += sorted(f"{table}.{k}" for k in set(keys) - _keys(table))
    if unknown:
        raise ConfigurationError(f"{where}: unknown settings {unknown}")
    if "exchanges" in data:
        data["exchanges"] = read_exchange_tables(data["exchanges"], registry.ids(), where)
    if "rate_limits" in data:
        data["rate_limits"] = _rate_limit_tables(data["rate_limits"], where, registry)
    return data


def _rate_limit_tables(table: object, where: str, registry: ExchangeRegistry,
                       ) -> RateLimitOverrides:
    """`[rate_limits]`, every override naming a limit its exchange declares: a misspelt
    name would otherwise be ignored, and the limit the operator meant to lower kept."""
    if not isinstance(table, dict):
        raise ConfigurationError(f"{where}: [rate_limits] must be a table")
    overrides = RateLimitOverrides.from_mapping(table)
    for exchange, name in overrides.limits:
        spec = registry.get(exchange)
        if spec is None:
            raise ConfigurationError(f"{where}: [rate_limits.{exchange}.{name}]: "
                                     f"exchange must be one of {', '.join(registry.ids())}")
        names = [limit.name for limit in spec.rate_limits]
        if name not in names:
            raise ConfigurationError(f"{where}: [rate_limits.{exchange}.{name}]: "
                                     f"{exchange} limits are {', '.join(names)}")
    return overrides


def load_config(
    config_file: Path | None,
    overrides: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
) -> DaemonConfig:
    """Defaults, then the file's tables, then the non-None `overrides`: flat names from
    `FLAGS`, plus `sim_endpoint` and `exchange_endpoint_flags` (simulator URLs)."""
    env = dict(os.environ) if env is None else env
    registry = ExchangeRegistry.default()
    tables = _read_file(config_file, registry) if config_file else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    for flag, value in given.items():
        if flag in FLAGS:
            table, key = FLAGS[flag]
            tables.setdefault(table, {})[key] = value
    tables["exchanges"] = with_flags(
        tables.get("exchanges", {}), registry.ids(), given.get("sim_endpoint"),
        given.get("exchange_endpoint_flags") or ())
    return DaemonConfig.read(tables, env)
