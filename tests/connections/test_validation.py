"""The field rules, each on its own: one answer names every bad field, never a secret's value."""

from __future__ import annotations

import pytest

from ctsd.connections import validation as rules
from ctsd.connections.model import (
    ApiType,
    CredentialField,
    CredentialsInput,
    MarginMode,
    PositionMode,
)
from ctsd.connections.validation import Violations
from ctsd.errors import InvalidArgument
from ctsd.exchanges.registry import ExchangeRegistry

REGISTRY = ExchangeRegistry.default()


def fields(check: object) -> dict[str, str]:
    """The violations a check filed, by field."""
    out = Violations()
    check(out)  # type: ignore[operator]
    return {v.field: v.description for v in out.items}


@pytest.mark.parametrize(("connection_id", "ok"), [
    ("a", True), ("main-1", True), ("a" * 63, True), ("a" * 64, False), ("1a", False),
    ("Main", False), ("a_b", False), ("", False),
])
def test_connection_ids(connection_id: str, ok: bool) -> None:
    found = fields(lambda out: rules.check_connection_id(connection_id, "connection_id", out))
    assert (found == {}) == ok


@pytest.mark.parametrize(("name", "problem"), [
    ("Main", None), (" ", "must not be empty"), ("x" * 101, "at most 100"),
    (" Main", "white space"), ("Ma\x07in", "control characters"), ("Ünïcode ✓", None),
])
def test_display_names(name: str, problem: str | None) -> None:
    found = fields(lambda out: rules.check_display_name(name, out))
    if problem is None:
        assert found == {}
    else:
        assert problem in found["display_name"]


def test_market_choices_the_exchange_does_not_offer() -> None:
    kraken = REGISTRY.get("kraken")
    found = fields(lambda out: rules.check_market(
        kraken, ApiType.OPTIONS, True, MarginMode.ISOLATED, PositionMode.HEDGE, out))
    assert set(found) == {"api_type", "testnet", "position_mode"}
    binance = REGISTRY.get("binance")
    assert fields(lambda out: rules.check_market(
        binance, None, False, MarginMode.CROSS, PositionMode.ONE_WAY, out)) == {
        "api_type": "is required"}
    spot = fields(lambda out: rules.check_market(
        binance, ApiType.SPOT, False, MarginMode.ISOLATED, PositionMode.ONE_WAY, out))
    assert set(spot) == {"margin_mode"}


def test_an_unknown_exchange_lists_the_supported_ones() -> None:
    out = Violations()
    assert rules.resolve_exchange(REGISTRY, "nasdaq" * 10, out) is None
    assert "binance, bybit, okx, kraken" in out.items[0].description
    assert "…" in out.items[0].description  # a long name is cut


def test_credential_shapes_are_checked_without_echoing_them() -> None:
    secret = "bad secret with spaces"
    found = fields(lambda out: rules.check_credential_values(
        CredentialsInput(api_key="k" * 257, api_secret=secret, passphrase="p\x00"), out))
    assert set(found) == {"credentials.api_key", "credentials.api_secret",
                          "credentials.passphrase"}
    assert all(secret not in d for d in found.values())
    emptied = CredentialsInput(api_key="")  # judged against the exchange's needs instead
    assert fields(lambda out: rules.check_credential_values(emptied, out)) == {}


def test_kraken_secrets_are_base64_and_passphrases_follow_the_exchange() -> None:
    kraken, okx = REGISTRY.get("kraken"), REGISTRY.get("okx")
    found = fields(lambda out: rules.check_secret_format(
        kraken, CredentialsInput(api_secret="not base64!"), out))
    assert "base64" in found["credentials.api_secret"]
    stored = {CredentialField.API_KEY: True, CredentialField.API_SECRET: True}
    assert "need a passphrase" in fields(
        lambda out: rules.check_credentials_complete(okx, stored, out))["credentials.passphrase"]
    with_passphrase = {**stored, CredentialField.PASSPHRASE: True}
    assert "have no passphrase" in fields(
        lambda out: rules.check_credentials_complete(kraken, with_passphrase, out))[
        "credentials.passphrase"]


def test_nested_views_file_violations_under_the_request_field() -> None:
    request = Violations()
    rules.check_connection_id("Bad", "connection_id", request)
    rules.check_display_name("", request.nested("connection."))
    with pytest.raises(InvalidArgument) as caught:
        request.raise_if_any("connection")
    assert [v.field for v in caught.value.violations] == [
        "connection_id", "connection.display_name"]
    Violations().raise_if_any("nothing")  # no violations: no error
