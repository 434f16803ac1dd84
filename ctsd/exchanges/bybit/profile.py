"""How ccxt's `bybit` is driven (v5 unified account)."""

from collections.abc import Mapping
from typing import Any

from ctsd.errors import FailureClass
from ctsd.exchanges import profile
from ctsd.exchanges.bybit import margin
from ctsd.exchanges.bybit.margin import read_options_account
from ctsd.exchanges.model import KeyPermissions
from ctsd.exchanges.spec import ApiType, RateLimitScope

_PING = "publicGetV5MarketTime"


def _permissions(answer: Any) -> KeyPermissions:
    """`/v5/user/query-api`: read-only flag, wallet and options permissions, IP binding.
    Spot margin orders need no permission of their own (spot trading covers them)."""
    result = answer["result"]
    if not isinstance(result, Mapping):
        raise ValueError("query-api answer without result")
    perms = result.get("permissions") or {}
    ips = result.get("ips") or []
    return KeyPermissions(
        read=True, trade=str(result.get("readOnly")) == "0",
        withdraw="Withdraw" in (perms.get("Wallet") or []),
        ip_restricted=bool(ips) and list(ips) != ["*"],
        options="OptionsTrade" in (perms.get("Options") or []))


def _uid(answer: Any) -> str:
    """`/v5/user/query-api`: `result.userID`, the UID whose limits every key of it shares."""
    return str(int(answer["result"]["userID"]))


BYBIT_CLIENT = profile.ClientProfile(
    spot_buy_fee_in_base=True,
    # ccxt's default and Bybit's documented default window: never wider than what it sends
    signing_window=profile.SigningWindow("recvWindow", "timeDifference", 5_000),
    ccxt_class="bybit",
    # ccxt refuses fetchOrder on unified accounts until told we know its 500-order window
    options={"fetchOrder": {"acknowledged": True}},
    api_types={
        ApiType.SPOT: profile.ApiTypeProfile({"defaultType": "spot"}, ("spot",), _PING),
        ApiType.MARGIN: profile.ApiTypeProfile({"defaultType": "spot"}, ("spot",), _PING),
        ApiType.PERPETUAL_FUTURES: profile.ApiTypeProfile(
            {"defaultType": "swap", "defaultSubType": "linear"}, ("linear",), _PING),
        ApiType.OPTIONS: profile.ApiTypeProfile({"defaultType": "option"}, ("option",), _PING),
    },
    error_codes={
        "10003": FailureClass.AUTHENTICATION,  # invalid key
        "10004": FailureClass.AUTHENTICATION,  # bad signature
        "33004": FailureClass.AUTHENTICATION,  # key expired
        "10005": FailureClass.PERMISSION,
        "10010": FailureClass.IP_NOT_ALLOWED,  # ccxt: PermissionDenied
        "10002": FailureClass.CLOCK_SKEW,
        "10006": FailureClass.RATE_LIMITED,
        "10018": FailureClass.RATE_LIMITED,
        "10016": FailureClass.MAINTENANCE,  # "service restarting"; ccxt: plain ExchangeError
    },
    unsupported_codes=frozenset({"10017"}),  # "Route not found" (with HTTP 404)
    refusals=(
        profile.RefusalRule(code="10006", scope=RateLimitScope.ACCOUNT),
        profile.RefusalRule(status=403, scope=RateLimitScope.IP, pause_s=600.0),  # IP banned 10 min
    ),
    reset_header="X-Bapi-Limit-Reset-Timestamp",
    permissions=profile.PermissionsProbe("privateGetV5UserQueryApi", _permissions),
    margin_trading=profile.MarginProfile(
        margin.read_margin_account, margin.order_params, margin.read_terms,
        margin.read_interest, margin.prepare, leverage_range=margin.LEVERAGE_RANGE),
    option_trading=profile.OptionsProfile(read_options_account,
                                          read_settlement=margin.read_settlement,
                                          underlying_field="underlyingPrice"),
    # the same answer: no extra request
    account_uid=profile.AccountUidProbe("privateGetV5UserQueryApi", _uid),
    # ccxt's unified-account fetchOrder sends no orderLinkId; /v5/order/realtime filtered by
    # it answers open and recently closed orders, the history endpoint older ones.
    client_order_ids=profile.ClientOrderIds(
        create="orderLinkId", lookup="orderLinkId",
        lookups=("fetch_open_orders", "fetch_canceled_and_closed_orders")),
    derivatives=profile.DerivativesProfile(
        position_mode_scope="symbol", margin_mode_scope="account",
        # 110025 "position mode not modified", 110043 "leverage not modified"; the unified
        # account's set-margin-mode answers success when nothing changes.
        unchanged={"position_mode": frozenset({"110025"}), "leverage": frozenset({"110043"})},
        hedge_param="positionIdx", hedge_values={"long": 1, "short": 2},
        funding_sign=-1,
    ),
)
