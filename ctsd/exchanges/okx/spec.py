"""What an OKX connection can be."""

from ctsd.exchanges.okx.limits import OKX_ENDPOINTS, OKX_RATE_LIMITS
from ctsd.exchanges.okx.profile import OKX_CLIENT
from ctsd.exchanges.spec import ApiType, ExchangeSpec
from ctsd.exchanges.support import key_test_only, trading

OKX = ExchangeSpec(
    id="okx",
    display_name="OKX",
    api_types=(ApiType.SPOT, ApiType.MARGIN, ApiType.PERPETUAL_FUTURES, ApiType.OPTIONS),
    testnet_supported=True,
    passphrase_required=True,
    rate_limits=OKX_RATE_LIMITS,
    endpoint_rules=OKX_ENDPOINTS,
    support=(
        trading(ApiType.SPOT),
        trading(ApiType.MARGIN),
        trading(ApiType.PERPETUAL_FUTURES),
        key_test_only(ApiType.OPTIONS, "options engines are not available yet"),
    ),
    client=OKX_CLIENT,
)
