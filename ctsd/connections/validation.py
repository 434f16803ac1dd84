"""Rules for connection fields, collected so one answer names every bad field.

Limits (documented in docs/api.md): display name 1-100 characters; id 1-63
of `[a-z0-9-]` starting with a letter; API key 1-256 and secret 1-512
printable ASCII characters without spaces; passphrase 1-128 printable
characters. Field paths are relative to the Connection resource.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata

from ctsd.connections.model import (
    ApiType,
    CredentialField,
    CredentialsInput,
    MarginMode,
    PositionMode,
)
from ctsd.errors import FieldViolation, InvalidArgument
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.exchanges.spec import ExchangeSpec

ID_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,62}")
DISPLAY_NAME_MAX = 100
CREDENTIAL_LIMITS = {
    CredentialField.API_KEY: 256,
    CredentialField.API_SECRET: 512,
    CredentialField.PASSPHRASE: 128,
}
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")


class Violations:
    """Accumulates field violations and raises them together.

    Checks name fields relative to the resource; `nested("connection.")`
    gives a view that files them under the request field holding it.
    """

    def __init__(self, prefix: str = "", items: list[FieldViolation] | None = None) -> None:
        self.prefix = prefix
        self.items: list[FieldViolation] = [] if items is None else items

    def nested(self, prefix: str) -> Violations:
        return Violations(self.prefix + prefix, self.items)

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(self.prefix + field, description))

    def raise_if_any(self, what: str) -> None:
        if self.items:
            detail = "; ".join(f"{v.field}: {v.description}" for v in self.items)
            raise InvalidArgument(f"invalid {what} ({detail})", self.items)


def check_connection_id(connection_id: str, field: str, out: Violations) -> None:
    if not ID_PATTERN.fullmatch(connection_id):
        out.add(field, "must be 1-63 characters of a-z, 0-9 and '-', starting with a letter")


def check_display_name(name: str, out: Violations) -> None:
    if not name.strip():
        out.add("display_name", "must not be empty")
    elif len(name) > DISPLAY_NAME_MAX:
        out.add("display_name", f"must be at most {DISPLAY_NAME_MAX} characters")
    elif name != name.strip():
        out.add("display_name", "must not start or end with white space")
    elif any(unicodedata.category(ch).startswith("C") for ch in name):
        out.add("display_name", "must not contain control characters")


def resolve_exchange(
    registry: ExchangeRegistry, exchange: str, out: Violations
) -> ExchangeSpec | None:
    if not exchange:
        out.add("exchange", "is required")
        return None
    spec = registry.get(exchange)
    if spec is None:
        shown = exchange if len(exchange) <= 40 else exchange[:40] + "…"
        out.add("exchange", f"unknown exchange {shown!r}; supported: {', '.join(registry.ids())}")
    return spec


def check_market(
    spec: ExchangeSpec | None,
    api_type: ApiType | None,
    testnet: bool,
    margin_mode: MarginMode,
    position_mode: PositionMode,
    out: Violations,
) -> None:
    """Checks that the exchange offers what the connection asks of it."""
    if api_type is None:
        out.add("api_type", "is required")
        return
    if spec is None:
        return
    if not spec.offers(api_type):
        offered = ", ".join(t.value for t in spec.api_types)
        out.add("api_type", f"{spec.id} does not offer {api_type.value}; it offers {offered}")
    if testnet and not spec.testnet_supported:
        out.add("testnet", f"{spec.id} has no testnet")
    if margin_mode is MarginMode.ISOLATED and api_type is ApiType.SPOT:
        out.add("margin_mode", "isolated margin needs api_type margin or perpetual_futures")
    if position_mode is PositionMode.HEDGE and api_type is not ApiType.PERPETUAL_FUTURES:
        out.add("position_mode", "hedge mode needs api_type perpetual_futures")


def check_credential_values(creds: CredentialsInput, out: Violations) -> None:
    """Checks the shape of each given credential, never echoing its value."""
    for cred, value in creds.given().items():
        path = f"credentials.{cred.value}"
        limit = CREDENTIAL_LIMITS[cred]
        if value == "":
            continue  # emptiness is judged against the exchange's needs
        if len(value) > limit:
            out.add(path, f"must be at most {limit} characters")
        elif cred is CredentialField.PASSPHRASE:
            if not value.isprintable():
                out.add(path, "must be printable characters")
        elif not _KEY_CHARS.fullmatch(value):
            out.add(path, "must be printable ASCII without spaces")


def check_secret_format(
    spec: ExchangeSpec | None, creds: CredentialsInput, out: Violations
) -> None:
    """The exchange's own secret format, where it has one; never echoing the value."""
    secret = creds.api_secret
    if spec is None or not spec.secret_is_base64 or not secret:
        return
    try:
        base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        out.add("credentials.api_secret",
                f"{spec.display_name} API secrets are base64 and this one is not: "
                "check it was copied whole")


def check_credentials_complete(
    spec: ExchangeSpec | None, stored: dict[CredentialField, bool], out: Violations
) -> None:
    """After applying a change: are the parts this exchange needs present?"""
    if not stored.get(CredentialField.API_KEY):
        out.add("credentials.api_key", "is required")
    if not stored.get(CredentialField.API_SECRET):
        out.add("credentials.api_secret", "is required")
    if spec is None:
        return
    has_passphrase = stored.get(CredentialField.PASSPHRASE, False)
    if spec.passphrase_required and not has_passphrase:
        out.add("credentials.passphrase", f"{spec.id} API keys need a passphrase")
    if has_passphrase and not spec.passphrase_required:
        out.add("credentials.passphrase", f"{spec.id} API keys have no passphrase")
