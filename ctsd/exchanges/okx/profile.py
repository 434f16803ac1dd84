"""How ccxt's `okx` is driven: one trading account, keys with a passphrase."""

from collections.abc import Mapping
from typing import Any

from ctsd.errors import FailureClass
from ctsd.exchanges import profile
from ctsd.exchanges.model import KeyPermissions
from ctsd.exchanges.okx import margin
from ctsd.exchanges.okx.margin import read_options_account
from ctsd.exchanges.spec import ApiType, RateLimitScope

_PING = "publicGetPublicTime"


def _permissions(answer: Any) -> KeyPermissions:
    """`account/config`: `perm` is e.g. "read_only,trade"; `ip` the key's whitelist."""
    config = answer["data"][0]
    if not isinstance(config, Mapping):
        raise ValueError("account/config answer without data")
    perms = {p.strip() for p in str(config.get("perm") or "").split(",")}
    return KeyPermissions(read=True, trade="trade" in perms, withdraw="withdraw" in perms,
                          ip_restricted=bool(str(config.get("ip") or "").strip()))


def _uid(answer: Any) -> str:
    """`account/config`: `data[0].uid`, the UID whose limits every key of it shares."""
    return str(int(answer["data"][0]["uid"]))


OKX_CLIENT = profile.ClientProfile(
    spot_buy_fee_in_base=True,
    ccxt_class="okx",
    api_types={
        ApiType.SPOT: profile.ApiTypeProfile({"defaultType": "spot"}, ("spot",), _PING),
        ApiType.MARGIN: profile.ApiTypeProfile({"defaultType": "margin"}, ("spot",), _PING),
        ApiType.PERPETUAL_FUTURES: profile.ApiTypeProfile(
            {"defaultType": "swap"}, ("swap",), _PING),
        ApiType.OPTIONS: profile.ApiTypeProfile({"defaultType": "option"}, ("option",), _PING),
    },
    error_codes={
        "50111": FailureClass.AUTHENTICATION,  # invalid key
        "50113": FailureClass.AUTHENTICATION,  # invalid signature
        "50105": FailureClass.AUTHENTICATION,  # wrong passphrase
        "50100": FailureClass.AUTHENTICATION,  # key frozen
        "50110": FailureClass.IP_NOT_ALLOWED,  # ccxt: PermissionDenied
        "50120": FailureClass.PERMISSION,  # ccxt 4.5.90: bare ExchangeError
        "50102": FailureClass.CLOCK_SKEW,
        "50112": FailureClass.CLOCK_SKEW,
        "50011": FailureClass.RATE_LIMITED,
        "50061": FailureClass.RATE_LIMITED,
        "50001": FailureClass.MAINTENANCE,
        "50004": FailureClass.TIMEOUT,
    },
    refusals=(
        profile.RefusalRule(code="50061", scope=RateLimitScope.ACCOUNT),
        profile.RefusalRule(code="50011"),
    ),
    permissions=profile.PermissionsProbe("privateGetAccountConfig", _permissions),
    margin_trading=profile.MarginProfile(
        margin.read_margin_account, margin.order_params, margin.read_terms,
        margin.read_interest, margin.prepare, leverage_range=margin.LEVERAGE_RANGE,
        close_short=margin.close_short),
    option_trading=profile.OptionsProfile(read_options_account),
    # the same answer: no extra request
    account_uid=profile.AccountUidProbe("privateGetAccountConfig", _uid),
    client_order_ids=profile.ClientOrderIds(create="clOrdId", lookup="clOrdId"),
    derivatives=profile.DerivativesProfile(
        # OKX answers success to every setting it already has; its margin mode is the
        # order's `tdMode`, and isolated leverage in hedge mode is per `posSide`.
        position_mode_scope="account", margin_mode_scope="order",
        hedge_param="posSide", hedge_values={"long": "long", "short": "short"},
        reduce_only_in_hedge=False, order_margin_param="tdMode",
        leverage_margin_param="marginMode", leverage_per_leg=True, tiers_in_contracts=True,
        liquidations=("privateGetAccountBills", {"instType": "SWAP", "type": "5"}),
    ),
)
