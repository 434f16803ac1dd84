"""Daemon settings: embedded defaults, an optional TOML file, then flags.

Frozen and typed, so a setting read anywhere is the one validated here.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cts.address import SOCKET_NAME, default_state_dir
from ctsd.errors import ConfigurationError

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("logfmt", "json")


@dataclass(frozen=True)
class ListenAddress:
    """Either a Unix socket path or a loopback TCP host and port."""

    unix_path: Path | None = None
    host: str = ""
    port: int = 0

    @property
    def grpc_target(self) -> str:
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.grpc_target if self.unix_path else f"tcp://{self.grpc_target}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> ListenAddress:
    if text.startswith("unix:"):
        path = text.removeprefix("unix:").removeprefix("//")
        if not path:
            raise ConfigurationError("listen: unix: needs a path")
        return ListenAddress(unix_path=Path(path))
    if text.startswith("tcp://"):
        hostport = text.removeprefix("tcp://")
        host, sep, port_text = hostport.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
            raise ConfigurationError(f"listen: {text!r} is not tcp://HOST:PORT")
        if not _is_loopback(host):
            raise ConfigurationError(
                f"listen: {host} is not a loopback address; TCP beyond loopback needs TLS "
                "and authentication, which this build does not offer yet"
            )
        return ListenAddress(host=host, port=int(port_text))
    raise ConfigurationError(f"listen: {text!r} must start with unix: or tcp://")


def default_socket(state_dir: Path, env: dict[str, str]) -> Path:
    if env.get("RUNTIME_DIRECTORY"):
        return Path(env["RUNTIME_DIRECTORY"].split(":")[0]) / SOCKET_NAME
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "ctsd" / SOCKET_NAME
    return state_dir / SOCKET_NAME


@dataclass(frozen=True)
class DaemonConfig:
    state_dir: Path
    listen: ListenAddress
    master_key_file: Path | None = None
    log_level: str = "info"
    log_format: str = "logfmt"
    grace_seconds: float = 4.0


_FILE_KEYS = {"listen", "state_dir", "master_key_file", "log_level", "log_format"}


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"cannot read config {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config {path} is not valid TOML: {exc}") from exc
    section = data.get("daemon", {})
    unknown = (set(data) - {"daemon"}) | (set(section) - _FILE_KEYS)
    if unknown:
        raise ConfigurationError(f"config {path}: unknown settings {sorted(unknown)}")
    return dict(section)


def load_config(
    config_file: Path | None,
    overrides: dict[str, Any],
    env: dict[str, str] | None = None,
) -> DaemonConfig:
    """Defaults, then the file's `[daemon]` table, then non-None `overrides`."""
    env = dict(os.environ) if env is None else env
    settings: dict[str, Any] = _read_file(config_file) if config_file else {}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    state_dir = Path(settings.get("state_dir") or default_state_dir(env)).expanduser()
    listen_text = settings.get("listen")
    listen = (
        parse_listen(str(listen_text))
        if listen_text
        else ListenAddress(unix_path=default_socket(state_dir, env))
    )
    config = DaemonConfig(state_dir=state_dir, listen=listen)
    if settings.get("master_key_file"):
        config = replace(config, master_key_file=Path(settings["master_key_file"]).expanduser())
    level = str(settings.get("log_level", config.log_level)).lower()
    fmt = str(settings.get("log_format", config.log_format)).lower()
    if level not in LOG_LEVELS:
        raise ConfigurationError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
    if fmt not in LOG_FORMATS:
        raise ConfigurationError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
    return replace(config, log_level=level, log_format=fmt)
