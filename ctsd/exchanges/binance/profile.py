"""How ccxt's `binance` is driven: api types, error codes ccxt misreads, key permissions."""

from collections.abc import Mapping
from typing import Any

from ctsd.errors import FailureClass
from ctsd.exchanges import profile
from ctsd.exchanges.binance import margin
from ctsd.exchanges.binance.margin import read_options_account, restrictions
from ctsd.exchanges.model import KeyPermissions
from ctsd.exchanges.spec import ApiType, RateLimitScope


def _permissions(account: Any) -> KeyPermissions:
    """`GET /api/v3/account` says whether the key may trade and withdraw.

    (`/sapi/v1/account/apiRestrictions` says more, IP restriction included, but
    costs a second request and is not simulated.)
    """
    if not isinstance(account, Mapping) or "canTrade" not in account:
        raise ValueError("account answer without canTrade")
    return KeyPermissions(read=True, trade=bool(account["canTrade"]),
                          withdraw=bool(account.get("canWithdraw")))


BINANCE_CLIENT = profile.ClientProfile(
    spot_buy_fee_in_base=True,
    request_window=profile.RequestWindow("timestamp", "recvWindow", 60_000),
    own_fills_order_param="orderId",
    per_trade_fees=True,
    ccxt_class="binance",
    api_types={
        ApiType.SPOT: profile.ApiTypeProfile({"defaultType": "spot"}, ("spot",), "publicGetPing"),
        # every order, trade and balance call of a margin connection goes to the cross
        # margin account (ccxt picks a spot market's endpoints otherwise)
        ApiType.MARGIN: profile.ApiTypeProfile(
            {"defaultType": "margin", "defaultMarginMode": "cross"}, ("spot",), "publicGetPing"),
        ApiType.PERPETUAL_FUTURES: profile.ApiTypeProfile(
            {"defaultType": "future"}, ("linear",), "fapiPublicGetPing"),
        ApiType.OPTIONS: profile.ApiTypeProfile({"defaultType": "option"}, ("option",)),
    },
    error_codes={
        # "Invalid API-key, IP, or permissions for action": ccxt raises DDoSProtection for
        # it once a signed call has worked. Binance does not say which of the three.
        "-2015": FailureClass.AUTHENTICATION,
        "-2014": FailureClass.AUTHENTICATION,
        "-1022": FailureClass.AUTHENTICATION,
        "-1021": FailureClass.CLOCK_SKEW,
        "-1003": FailureClass.RATE_LIMITED,
        "-1015": FailureClass.RATE_LIMITED,
    },
    # After a signed read worked, -2015 on a later call means the key lacks a permission.
    error_codes_after_auth={"-2015": FailureClass.PERMISSION},
    refusals=(
        profile.RefusalRule(code="-1015", scope=RateLimitScope.ACCOUNT),  # too many new orders
        # banned: Retry-After says how long
        profile.RefusalRule(status=418, scope=RateLimitScope.IP),
        profile.RefusalRule(status=429, scope=RateLimitScope.IP),
    ),
    permissions=profile.PermissionsProbe("privateGetAccount", _permissions,
                                         answered_by_balance=frozenset({ApiType.SPOT})),
    permissions_for={
        api_type: profile.PermissionsProbe("sapiGetAccountApiRestrictions", restrictions)
        for api_type in (ApiType.MARGIN, ApiType.OPTIONS)},
    margin_trading=profile.MarginProfile(margin.read_margin_account, margin.order_params,
                                         margin.read_terms, margin.read_interest,
                                         read_liquidations=margin.read_liquidations),
    option_trading=profile.OptionsProfile(read_options_account, holdings_from_account=True,
                                          read_settlement=margin.read_settlement,
                                          underlying_field="exercisePrice",
                                          position_params={"method": "option"}),
    client_order_ids=profile.ClientOrderIds(create="newClientOrderId", lookup="origClientOrderId"),
    derivatives=profile.DerivativesProfile(
        position_mode_scope="account", margin_mode_scope="symbol",
        # -4059 "No need to change position side", -4046 "No need to change margin type";
        # the same leverage is simply answered again.
        unchanged={"position_mode": frozenset({"-4059"}), "margin_mode": frozenset({"-4046"})},
        hedge_param="positionSide", hedge_values={"long": "LONG", "short": "SHORT"},
        reduce_only_in_hedge=False,  # -1106: a hedge-mode order closes by positionSide
    ),
)
