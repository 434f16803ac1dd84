"""Listen addresses, default paths and the TOML file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ctsd.config import DaemonConfig, load_config, parse_listen
from ctsd.connections.predefined import KEYS as PREDEFINED_KEYS
from ctsd.errors import ConfigurationError
from ctsd.exchanges.settings import ExchangeSettings
from ctsd.ratelimit.config import FleetSettings, redacted
from ctsd.settings import leaf_fields


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


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_beyond_loopback_needs_tls_and_an_auth_method(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    tls = {"tls_cert_file": "/c.pem", "tls_key_file": "/k.pem"}
    listen = {"listen": "tcp://0.0.0.0:50051"}
    with pytest.raises(ConfigurationError, match="needs TLS"):
        load_config(None, listen, env)
    with pytest.raises(ConfigurationError, match="needs TLS"):
        load_config(None, {**listen, **tls}, env)
    with pytest.raises(ConfigurationError, match="needs TLS"):
        load_config(None, {**listen, "auth_token_file": "/t"}, env)
    config = load_config(None, {**listen, **tls, "auth_token_file": "/t"}, env)
    assert config.listen.host == "0.0.0.0" and not config.listen.is_loopback
    mtls = load_config(None, {**listen, **tls, "tls_client_ca_file": "/ca.pem"}, env)
    assert mtls.authenticates and mtls.auth.token_file is None


def test_tls_and_token_come_from_systemd_credentials(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    for name in ("tls-cert", "tls-key", "auth-token"):
        (creds / name).write_text("x")
    env = {"HOME": str(tmp_path), "CREDENTIALS_DIRECTORY": str(creds)}
    config = load_config(None, {"listen": "tcp://[::]:1"}, env)
    assert config.tls is not None and config.tls.cert_file == creds / "tls-cert"
    assert config.auth.token_file == creds / "auth-token"
    explicit = load_config(None, {"tls_cert_file": "/mine.pem"}, env)
    assert explicit.tls is not None and explicit.tls.cert_file == Path("/mine.pem")


def test_tables_of_the_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "ctsd.toml",
        '[daemon]\nmetrics_listen = "127.0.0.1:9464"\ngrace_seconds = 1.5\nsocket_mode = "0660"\n'
        '[tls]\ncert_file = "/c"\nkey_file = "/k"\nclient_ca_file = "/ca"\n'
        '[auth]\nclient_names = ["a"]\nopen_services = ["health"]\n',
    )
    config = load_config(path, {}, {"HOME": str(tmp_path)})
    assert config.metrics_listen == ("127.0.0.1", 9464) and config.grace_seconds == 1.5
    assert config.socket_mode == 0o660
    assert config.auth.client_names == ("a",) and config.auth.open_services == {"health"}


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[tls]\nclient_ca_file = "/ca"\n', "needs cert_file and key_file"),
        ('[tls]\ncert_file = "/c"\n', "both cert_file and key_file"),
        ('[auth]\nclient_names = ["a"]\n', "needs mTLS"),
        ('[auth]\nopen_services = ["connections"]\n', "may list only"),
        ('[tls]\ncertificate = "/c"\n', "unknown settings"),
        ("[daemon]\ngrace_seconds = 600\n", "grace_seconds"),
        ('[daemon]\nsocket_mode = "0666"\n', "socket_mode"),
        ('[daemon]\nmetrics_listen = "9464"\n', "metrics_listen"),
    ],
)
def test_bad_transport_settings_are_refused(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_config(_write(tmp_path / "ctsd.toml", toml), {}, {"HOME": str(tmp_path)})


# --- exchange endpoints and batch settings -------------------------------------------


def test_exchange_endpoints_from_the_file_then_the_flags(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "ctsd.toml",
        '[exchanges.binance]\nendpoint = "http://127.0.0.1:9000/"\n'
        "[batch]\nconcurrency = 5\nitem_timeout_s = 12\nmax_attempts = 2\n",
    )
    env = {"HOME": str(tmp_path)}
    config = load_config(path, {}, env)
    assert config.exchanges == {"binance": ExchangeSettings("http://127.0.0.1:9000/binance")}
    assert (config.batch.concurrency, config.batch.item_timeout_s) == (5, 12.0)
    assert config.batch.max_attempts == 2
    flags = load_config(
        path,
        {"sim_endpoint": "http://127.0.0.1:7000", "exchange_endpoint_flags": ["okx=http://h:1"]},
        env,
    )
    assert {x: s.base_url for x, s in flags.exchanges.items()} == {
        "binance": "http://127.0.0.1:7000/binance",
        "bybit": "http://127.0.0.1:7000/bybit",
        "kraken": "http://127.0.0.1:7000/kraken",
        "okx": "http://h:1/okx",
    }
    assert load_config(None, {}, env).exchanges == {}
    based = _write(tmp_path / "based.toml", '[exchanges.okx]\nbase_url = "https://proxy:8443/okx/"\n')
    assert load_config(based, {}, env).exchanges["okx"].base_url == "https://proxy:8443/okx"


@pytest.mark.parametrize(
    ("toml", "overrides", "message"),
    [
        ('[exchanges.nasdaq]\nendpoint = "http://h:1"\n', {}, "must be one of"),
        ('[exchanges.binance]\nhost = "h"\n', {}, "only `base_url` or `endpoint` keys"),
        ('[exchanges.binance]\nbase_url = "h:1"\n', {}, "not an http"),
        ('[exchanges.binance]\nendpoint = "ftp://h"\n', {}, "not an http"),
        ("[batch]\nconcurrency = 0\n", {}, "concurrency"),
        ("[batch]\nitem_timeout_s = -1\n", {}, "item_timeout_s"),
        ("[batch]\nmax_attempts = true\n", {}, "max_attempts"),
        ("", {"exchange_endpoint_flags": ["binance"]}, "ID=URL"),
        ("", {"sim_endpoint": "127.0.0.1:9000"}, "not an http"),
    ],
)
def test_bad_endpoint_and_batch_settings_are_refused(
    tmp_path: Path, toml: str, overrides: dict[str, object], message: str
) -> None:
    path = _write(tmp_path / "ctsd.toml", toml)
    with pytest.raises(ConfigurationError, match=message):
        load_config(path, overrides, {"HOME": str(tmp_path)})


def test_rate_limit_overrides_come_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ctsd.toml"
    path.write_text(
        "[rate_limits]\nsafety_margin = 1.0\n"
        "[rate_limits.binance.request_weight]\nlimit = 600\ninterval_s = 60\n"
    )
    limits = load_config(path, {}, {"HOME": str(tmp_path)}).rate_limits
    assert limits.safety_margin == 1.0
    assert limits.limits[("binance", "request_weight")].limit == 600
    assert load_config(None, {}, {"HOME": str(tmp_path)}).rate_limits.safety_margin == 0.9


def test_bad_rate_limit_overrides_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ctsd.toml"
    path.write_text("[rate_limits.binance.request_weight]\nlimit = 600\nspeed = 2\n")
    with pytest.raises(ConfigurationError, match="rate_limits"):
        load_config(path, {}, {"HOME": str(tmp_path)})


@pytest.mark.parametrize(("toml", "message"), [
    ("[rate_limits.binanse.request_weight]\nlimit = 600\n", "exchange must be one of binance"),
    ("[rate_limits.binance.weight]\nlimit = 600\n", "binance limits are request_weight, "),
    ("rate_limits = 5\n", r"\[rate_limits\] must be a table"),
])
def test_rate_limit_overrides_must_name_a_declared_limit(
    tmp_path: Path, toml: str, message: str,
) -> None:
    path = _write(tmp_path / "ctsd.toml", toml)
    with pytest.raises(ConfigurationError, match=message):
        load_config(path, {}, {"HOME": str(tmp_path)})


def test_cancelling_orders_on_shutdown_is_opt_in(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    assert not load_config(None, {}, env).engines.cancel_orders_on_shutdown
    path = _write(tmp_path / "on.toml", "[engines]\ncancel_orders_on_shutdown = true\n")
    assert load_config(path, {}, env).engines.cancel_orders_on_shutdown
    path = _write(tmp_path / "bad.toml", '[engines]\ncancel_orders_on_shutdown = "yes"\n')
    with pytest.raises(ConfigurationError, match="cancel_orders_on_shutdown must be true"):
        load_config(path, {}, env)


def test_the_fleet_table_is_read_and_checked(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    alone = load_config(None, {}, env).fleet
    assert not alone.enabled and alone.egress == "default" and alone.member
    path = _write(tmp_path / "fleet.toml", '[fleet]\nredis_url = "unix:///run/redis.sock"\n'
                  'egress = "office"\nmember = "host-a"\nheartbeat_s = 2\nstale_after_s = 6\n')
    fleet = load_config(path, {}, env).fleet
    assert fleet == FleetSettings("unix:///run/redis.sock", "office", "host-a",
                                  heartbeat_s=2.0, stale_after_s=6.0)
    assert fleet.enabled
    for bad, message in [('colour = "red"', "unknown settings"), ("poll_s = 0", "poll_s"),
                         ('heartbeat_s = "soon"', "heartbeat_s"),
                         ('redis_url = "http://x"', "redis_url"), ('egress = ""', "egress"),
                         ("heartbeat_s = 5\nstale_after_s = 5", "stale_after_s must exceed")]:
        path = _write(tmp_path / "bad.toml", f"[fleet]\n{bad}\n")
        with pytest.raises(ConfigurationError, match=message):
            load_config(path, {}, env)


def test_a_redis_password_is_never_shown() -> None:
    assert redacted("redis://app:s3cret@cache:6380/2") == "redis://app:***@cache:6380/2"
    assert redacted("unix:///run/redis.sock") == "unix:///run/redis.sock"


# --- every setting declared once: reloadable or not, and shown in the example file -------

EXAMPLE = Path(__file__).resolve().parents[1] / "systemd" / "ctsd.toml.example"
_HEADER = re.compile(r"^#?\s*\[\[?([\w.]+)\]")
_KEY = re.compile(r"^#?\s*([a-z_]+)\s*=\s*\S")
_PER_ID = {"exchanges": "exchanges.<id>", "rate_limits": "rate_limits.<id>.<limit>"}
_LIMIT_KEYS = ("limit", "interval_s", "safety_margin")
"""`rate_limits.limits` is the `[rate_limits.<id>.<limit>]` tables (LimitOverride)."""


def _example_keys() -> set[str]:
    """`table.key` for every key the example shows, commented out or not."""
    found: set[str] = set()
    table = ""
    for line in EXAMPLE.read_text().splitlines():
        if header := _HEADER.match(line):
            parts = header.group(1).split(".")
            table = _PER_ID[parts[0]] if len(parts) > 1 and parts[0] in _PER_ID else parts[0]
        elif (key := _KEY.match(line)) and table:
            found.add(f"{table}.{key.group(1)}")
    return found


def _settings() -> list[tuple[str, bool | None]]:
    """Every setting as the example names it: [daemon]'s are DaemonConfig's own fields."""
    named = []
    for name, reload in leaf_fields(DaemonConfig):
        if name == "rate_limits.limits":
            named += [(f"rate_limits.<id>.<limit>.{k}", reload) for k in _LIMIT_KEYS]
        else:
            named.append((name if "." in name else f"daemon.{name}", reload))
    return named


def test_every_setting_says_whether_a_reload_applies_it_and_the_example_shows_it() -> None:
    settings = _settings()
    undeclared = [name for name, reload in settings if reload is None]
    assert not undeclared, f"declare reload=True or False for {undeclared}"
    missing = sorted({name for name, _ in settings} - _example_keys())
    assert not missing, f"systemd/ctsd.toml.example does not show {missing}"
    unknown = sorted(_example_keys() - {name for name, _ in settings}
                     - {"exchanges.<id>.endpoint"})  # the simulator shorthand for base_url
    assert not unknown, f"the example shows settings that do not exist: {unknown}"


def test_a_reload_applies_what_may_change_and_names_the_rest(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    running = load_config(None, {}, env)
    new_file = _write(tmp_path / "new.toml", (
        '[daemon]\nlog_level = "debug"\ngrace_seconds = 9\n'
        "[batch]\nconcurrency = 7\n"
        "[rate_limits]\nsafety_margin = 0.5\n"
        '[exchanges.okx]\nendpoint = "http://127.0.0.1:1"\n'))
    applied, restart = running.reloaded(load_config(new_file, {}, env))
    assert (applied.log_level, applied.rate_limits.safety_margin) == ("debug", 0.5)
    assert (applied.grace_seconds, applied.batch.concurrency) == (4.0, 3)
    assert applied.exchanges == {}
    assert restart == ["grace_seconds", "batch.concurrency", "exchanges"]
    reloadable = {name for name, reload in _settings() if reload}
    assert reloadable == {"daemon.log_level", "daemon.log_format", "daemon.log_ccxt_debug",
                          *(f"connections.{k}" for k in PREDEFINED_KEYS),
                          "rate_limits.safety_margin",
                          "rate_limits.guard_s", *(f"rate_limits.<id>.<limit>.{k}"
                                                   for k in _LIMIT_KEYS)}
