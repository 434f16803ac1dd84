"""Supported exchanges and the one generic client that talks to them (on ccxt).

    registry.py      ExchangeRegistry: the explicit list of venues (no discovery)
    spec.py          ExchangeSpec, RateLimitSpec, EndpointRule, Charge: plain data
    <venue>/         spec.py (its ExchangeSpec), limits.py (RateLimitSpecs and EndpointRules),
                     profile.py (its ClientProfile: ccxt class, options, error codes)
    factory.py       ExchangeClientFactory: builds clients; owns markets and the session
    client.py        ExchangeClient: what connection tests and engines call, made of
      ccxt_calls.py    CcxtCalls: every request's path (markets, lane, limiter, errors)
      probe_calls.py   ProbeCalls: what a connection test asks
      market_reads.py  MarketReads: what engines read of a market
      order_calls.py   OrderCalls: a LIVE engine's orders
      kept_answers.py  the venue's last answers to probe requests
    markets.py       MarketCache: markets loaded once per target, shared, refreshed
    throttle.py      RequestGate: every ccxt request through the rate limiter
    ccxt_errors.py   ccxt exceptions → `ctsd.errors.ExchangeFailure` subclasses, once
    answers.py       ccxt dicts → validated values (model.py)

    settings.py      ExchangeSettings: the `[exchanges.<id>]` table (base_url)
    ccxt_internals.py  every ccxt internal relied on, and why; checked on each instance

Nothing here imports ccxt at module import; `ccxt_internals` does on the first client.
"""
