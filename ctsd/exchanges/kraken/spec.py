"""What a Kraken connection can be."""

from ctsd.exchanges.kraken.limits import KRAKEN_ENDPOINTS, KRAKEN_RATE_LIMITS
from ctsd.exchanges.kraken.profile import KRAKEN_CLIENT
from ctsd.exchanges.spec import ApiType, ExchangeSpec
from ctsd.exchanges.support import MARGIN_STREAMED, streamed

KRAKEN = ExchangeSpec(
    id="kraken",
    display_name="Kraken",
    api_types=(ApiType.SPOT, ApiType.MARGIN),
    testnet_supported=False,
    passphrase_required=False,
    rate_limits=KRAKEN_RATE_LIMITS,
    endpoint_rules=KRAKEN_ENDPOINTS,
    support=(
        streamed(ApiType.SPOT),
        streamed(ApiType.MARGIN, MARGIN_STREAMED),
    ),
    client=KRAKEN_CLIENT,
    secret_is_base64=True,
)
