"""The Connection resource as the domain sees it: frozen values, no gRPC."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from ctsd.connections.checks.results import TestResult, TestStatus
from ctsd.exchanges.spec import ApiType

__all__ = [
    "ApiType",
    "Connection",
    "ConnectionDraft",
    "ConnectionPatch",
    "CredentialField",
    "CredentialsInfo",
    "CredentialsInput",
    "MarginMode",
    "MarketDataMethod",
    "PositionMode",
    "TestResult",
    "TestStatus",
]


class MarginMode(enum.Enum):
    CROSS = "cross"
    ISOLATED = "isolated"


class PositionMode(enum.Enum):
    ONE_WAY = "one_way"
    HEDGE = "hedge"


class MarketDataMethod(enum.Enum):
    REST = "rest"
    WEBSOCKET = "websocket"


class CredentialField(enum.Enum):
    """The sealed parts of a key; their values name the sealed blob's field."""

    API_KEY = "api_key"
    API_SECRET = "api_secret"
    PASSPHRASE = "passphrase"


@dataclass(frozen=True)
class CredentialsInput:
    """Credentials a client sent; None means "not given", "" means "clear"."""

    api_key: str | None = None
    api_secret: str | None = None
    passphrase: str | None = None

    def given(self) -> dict[CredentialField, str]:
        values = {
            CredentialField.API_KEY: self.api_key,
            CredentialField.API_SECRET: self.api_secret,
            CredentialField.PASSPHRASE: self.passphrase,
        }
        return {name: value for name, value in values.items() if value is not None}

    def __repr__(self) -> str:  # a stray log of this object must not leak
        parts = ", ".join(f"{f.value}=<{'set' if v else 'empty'}>" for f, v in self.given().items())
        return f"CredentialsInput({parts})"


@dataclass(frozen=True)
class CredentialsInfo:
    api_key_set: bool = False
    api_key_hint: str = ""
    api_secret_set: bool = False
    passphrase_set: bool = False


@dataclass(frozen=True)
class ConnectionDraft:
    """Everything a client chooses when creating a connection."""

    display_name: str
    exchange: str
    api_type: ApiType | None
    testnet: bool = False
    margin_mode: MarginMode | None = None
    position_mode: PositionMode | None = None
    market_data_method: MarketDataMethod | None = None
    enabled: bool = False
    predefined: bool = False
    credentials: CredentialsInput = field(default_factory=CredentialsInput)


@dataclass(frozen=True)
class ConnectionPatch:
    """The fields an update changes; None leaves a field as it is."""

    display_name: str | None = None
    api_type: ApiType | None = None
    testnet: bool | None = None
    margin_mode: MarginMode | None = None
    position_mode: PositionMode | None = None
    market_data_method: MarketDataMethod | None = None
    enabled: bool | None = None
    credentials: CredentialsInput = field(default_factory=CredentialsInput)


@dataclass(frozen=True)
class Connection:
    id: str
    display_name: str
    exchange: str
    api_type: ApiType
    testnet: bool
    margin_mode: MarginMode
    position_mode: PositionMode
    market_data_method: MarketDataMethod
    enabled: bool
    predefined: bool
    credentials: CredentialsInfo
    created_at: datetime
    updated_at: datetime
    revision: int
    last_test: TestResult | None = None
    account_uid: str | None = None
    """The account (UID) the key belongs to, learned by a test where the exchange counts
    limits per UID: every key of it shares that account's rate-limit buckets. None until
    a test has learned it, and again once the API key changes. Not a secret."""

    @property
    def name(self) -> str:
        return f"connections/{self.id}"

    @property
    def etag(self) -> str:
        """Opaque and derived: changes whenever the stored row changes."""
        digest = hashlib.sha256(
            f"{self.id}|{self.created_at.isoformat()}|{self.revision}".encode()
        ).hexdigest()[:16]
        return f'W/"{digest}"'
