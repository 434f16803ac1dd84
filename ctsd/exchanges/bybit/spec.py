"""What a Bybit connection can be."""

from ctsd.exchanges.bybit.limits import BYBIT_ENDPOINTS, BYBIT_RATE_LIMITS
from ctsd.exchanges.bybit.profile import BYBIT_CLIENT
from ctsd.exchanges.spec import ApiType, ExchangeSpec
from ctsd.exchanges.support import MARGIN_STREAMED, streamed, trading

BYBIT = ExchangeSpec(
    id="bybit",
    display_name="Bybit",
    api_types=(ApiType.SPOT, ApiType.MARGIN, ApiType.PERPETUAL_FUTURES, ApiType.OPTIONS),
    testnet_supported=True,
    passphrase_required=False,
    rate_limits=BYBIT_RATE_LIMITS,
    endpoint_rules=BYBIT_ENDPOINTS,
    support=(
        streamed(ApiType.SPOT),
        streamed(ApiType.MARGIN, MARGIN_STREAMED),
        streamed(ApiType.PERPETUAL_FUTURES),
        trading(ApiType.OPTIONS),
    ),
    client=BYBIT_CLIENT,
)
