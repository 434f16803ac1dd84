"""Listen addresses, default paths and the TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctsd.config import load_config, parse_listen
from ctsd.errors import ConfigurationError


def test_default_socket_follows_runtime_directory_then_xdg_then_state(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    state = tmp_path / ".local/state/ctsd"
    assert load_config(None, {}, env).listen.unix_path == state / "ctsd.sock"
    env["XDG_RUNTIME_DIR"] = "/run/user/1"
    assert load_config(None, {}, env).listen.unix_path == Path("/run/user/1/ctsd/ctsd.sock")
    env["RUNTIME_DIRECTORY"] = "/run/ctsd"
    env["STATE_DIRECTORY"] = "/var/lib/ctsd"
    config = load_config(None, {}, env)
    assert config.listen.unix_path == Path("/run/ctsd/ctsd.sock")
    assert config.state_dir == Path("/var/lib/ctsd")


@pytest.mark.parametrize("text", ["tcp://127.0.0.1:50051", "tcp://[::1]:0", "tcp://localhost:1"])
def test_loopback_tcp_is_accepted(text: str) -> None:
    assert parse_listen(text).port >= 0


@pytest.mark.parametrize(
    "text",
    [
        "tcp://0.0.0.0:50051",
        "tcp://10.1.2.3:1",
        "tcp://example.com:1",
        "http://x",
        "unix:",
        "tcp://1.2.3.4",
    ],
)
def test_other_addresses_are_refused(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_listen(text)


def test_toml_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "ctsd.toml"
    path.write_text('[daemon]\nlisten = "tcp://127.0.0.1:7000"\nlog_level = "debug"\n')
    config = load_config(path, {"log_level": "warning"}, {"HOME": str(tmp_path)})
    assert config.listen.port == 7000 and config.log_level == "warning"


def test_unknown_toml_settings_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ctsd.toml"
    path.write_text("[daemon]\nlisten_on = 1\n")
    with pytest.raises(ConfigurationError, match="unknown settings"):
        load_config(path, {}, {})
