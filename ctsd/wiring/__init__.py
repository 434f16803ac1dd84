"""Where the daemon is put together: the composition root and the adapters between domains.

An adapter that bridges two domain packages (the engine and the exchange
layer, connection tests and the exchange layer, the vault and the store)
lives here rather than in either of them, so the domain packages do not
import each other in circles.

    engine_exchange.py  the engine's backend (market data, clients) on connections + exchanges
    engine_orders.py    the engine's order client on an authenticated ExchangeClient
    check_probes.py     connection tests' probes: one ExchangeClient per test
    rotate_key.py       `ctsd rotate-key`: the vault's rotation on the store
    migrate.py          `ctsd migrate`: the schema brought up to this ctsd's, on purpose
"""
