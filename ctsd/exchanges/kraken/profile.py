"""How ccxt's `kraken` is driven: spot only; margin trades spot pairs with leverage."""

from ctsd.errors import FailureClass
from ctsd.exchanges.kraken import margin
from ctsd.exchanges.profile import (
    ApiTypeProfile,
    ClientOrderIds,
    ClientProfile,
    MarginProfile,
    RefusalRule,
)
from ctsd.exchanges.spec import ApiType, RateLimitScope

KRAKEN_CLIENT = ClientProfile(
    # The v2 executions stream names an order's fee only as `fee_usd_equiv` (ccxt.pro
    # books it in "USD"), an equivalent, not what was charged: each trade's `fees` is.
    per_trade_fees=True,
    ccxt_class="kraken",
    api_types={
        ApiType.SPOT: ApiTypeProfile({"defaultType": "spot"}, ("spot",), "publicGetTime"),
        ApiType.MARGIN: ApiTypeProfile({"defaultType": "spot"}, ("spot",), "publicGetTime"),
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
        RefusalRule(code="EAPI:Rate limit exceeded", scope=RateLimitScope.ACCOUNT),
        RefusalRule(code="EGeneral:Temporary lockout", scope=RateLimitScope.ACCOUNT),
    ),
    # Kraken has no endpoint that lists a key's permissions.
    # QueryOrders takes txids only; OpenOrders and ClosedOrders filter by cl_ord_id.
    client_order_ids=ClientOrderIds(
        create="cl_ord_id", lookup="cl_ord_id",
        lookups=("fetch_open_orders", "fetch_closed_orders")),
    sequential_apis=("private",),
    margin_trading=MarginProfile(
        margin.read_margin_account, margin.order_params, margin.read_terms,
        margin.read_interest, default_leverage=margin.DEFAULT_LEVERAGE,
        leverage_range=margin.LEVERAGE_RANGE),
)
