"""The market-data hub: one set of WebSocket subscriptions per venue, shared by every engine.

`hub.MarketDataHub` owns the connections (shards), their pacing and their
liveness; `feeds.Subscription` is one shared stream with its health. The
exchange layer (`ctsd.exchanges.streams`) is the only part that knows ccxt.pro.
"""
