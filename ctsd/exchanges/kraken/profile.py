"""How ccxt's `kraken` is driven: spot only; margin trades spot pairs with leverage."""

from ctsd.errors import FailureClass
from ctsd.exchanges import profile
from ctsd.exchanges.kraken import margin
from ctsd.exchanges.spec import ApiType, RateLimitScope

KRAKEN_CLIENT = profile.ClientProfile(
    # The v2 executions stream names an order's fee only as `fee_usd_equiv` (ccxt.pro
    # books it in "USD"), an equivalent, not what was charged: each trade's `fees` is.
    per_trade_fees=True,
    # ccxt.pro's Kraken parses no `filled` from executions (only a closed order's amount).
    stream_filled_field="cum_qty",
    ccxt_class="kraken",
    api_types={
        ApiType.SPOT: profile.ApiTypeProfile({"defaultType": "spot"}, ("spot",), "publicGetTime"),
        ApiType.MARGIN: profile.ApiTypeProfile({"defaultType": "spot"}, ("spot",), "publicGetTime"),
    },
    error_codes={
        "EAPI:Invalid key": FailureClass.AUTHENTICATION,
        "EAPI:Invalid signature": FailureClass.AUTHENTICATION,
        "EAPI:Invalid nonce": FailureClass.CLOCK_SKEW,
        "EGeneral:Permission denied": FailureClass.PERMISSION,
        "EAPI:Rate limit exceeded": FailureClass.RATE_LIMITED,
        "EGeneral:Too many requests": FailureClass.RATE_LIMITED,
        "EGeneral:Temporary lockout": FailureClass.RATE_LIMITED,
        "EService:Unavailable": FailureClass.MAINTENANCE,
        "EService:Busy": FailureClass.NETWORK,
    },
    unsupported_codes=frozenset({"EGeneral:Unknown method"}),  # HTTP 200; ccxt: ExchangeError
    refusals=(
        profile.RefusalRule(code="EAPI:Rate limit exceeded", scope=RateLimitScope.ACCOUNT),
        profile.RefusalRule(code="EGeneral:Temporary lockout", scope=RateLimitScope.ACCOUNT),
    ),
    # Kraken has no endpoint that lists a key's permissions.
    # QueryOrders takes txids only; OpenOrders and ClosedOrders filter by cl_ord_id.
    client_order_ids=profile.ClientOrderIds(
        create="cl_ord_id", lookup="cl_ord_id",
        lookups=("fetch_open_orders", "fetch_closed_orders")),
    sequential_apis=("private",),
    margin_trading=profile.MarginProfile(
        margin.read_margin_account, margin.order_params, margin.read_terms,
        margin.read_interest, default_leverage=margin.DEFAULT_LEVERAGE,
        leverage_range=margin.LEVERAGE_RANGE),
)
