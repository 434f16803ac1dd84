"""What an OKX connection can be."""

from ctsd.exchanges.okx.limits import OKX_ENDPOINTS, OKX_RATE_LIMITS
from ctsd.exchanges.okx.profile import OKX_CLIENT
from ctsd.exchanges.spec import ApiType, ExchangeSpec
from ctsd.exchanges.support import MARGIN_STREAMED, key_test_only, streamed

COIN_MARGINED = ("OKX options are coin-margined (premiums, fees and settlement in BTC or "
                 "ETH); engines book PnL in the quote currency and do not trade them yet")

OKX = ExchangeSpec(
    id="okx",
    display_name="OKX",
    api_types=(ApiType.SPOT, ApiType.MARGIN, ApiType.PERPETUAL_FUTURES, ApiType.OPTIONS),
    testnet_supported=True,
    passphrase_required=True,
    rate_limits=OKX_RATE_LIMITS,
    endpoint_rules=OKX_ENDPOINTS,
    support=(
        streamed(ApiType.SPOT),
        streamed(ApiType.MARGIN, MARGIN_STREAMED),
        streamed(ApiType.PERPETUAL_FUTURES),
        key_test_only(ApiType.OPTIONS, COIN_MARGINED),
    ),
    client=OKX_CLIENT,
)
