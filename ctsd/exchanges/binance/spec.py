"""What a Binance connection can be."""

from ctsd.exchanges.binance.limits import BINANCE_ENDPOINTS, BINANCE_RATE_LIMITS
from ctsd.exchanges.binance.profile import BINANCE_CLIENT
from ctsd.exchanges.spec import ApiType, ExchangeSpec
from ctsd.exchanges.support import MARGIN_STREAMED, streamed, trading

BINANCE = ExchangeSpec(
    id="binance",
    display_name="Binance",
    api_types=(ApiType.SPOT, ApiType.MARGIN, ApiType.PERPETUAL_FUTURES, ApiType.OPTIONS),
    testnet_supported=True,
    passphrase_required=False,
    rate_limits=BINANCE_RATE_LIMITS,
    endpoint_rules=BINANCE_ENDPOINTS,
    support=(
        streamed(ApiType.SPOT),
        streamed(ApiType.MARGIN, MARGIN_STREAMED),
        streamed(ApiType.PERPETUAL_FUTURES),
        trading(ApiType.OPTIONS),
    ),
    client=BINANCE_CLIENT,
)
