"""The trade engine: one supervised engine per connection, strategy -> risk -> broker each cycle.

Layout: `config` (what an engine runs, validated), `status` (lifecycle and the
snapshot watchers see), `orders` and `ledger` (what was traded and what it is
worth), `risk` (pre-trade checks), `brokers` (PAPER and LIVE, one protocol),
`engine` (one cycle), `supervisor` (the loop, failure and restart), `manager`
(the one owner of all engine tasks), `watch` (bounded fan-out to watchers), and
`ports` (the protocols the daemon's wiring implements: market data, exchange
orders, storage). No module here imports grpc, SQL or ccxt.
"""
