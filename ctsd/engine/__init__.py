"""The trade engine: one supervised engine per connection, strategy -> risk -> broker each cycle.

Layout: `config` (what an engine runs, validated), `status` (lifecycle and the
snapshot watchers see), `orders` and `ledger` (what was traded and what it is
worth), `risk` (pre-trade checks), `brokers` (PAPER and LIVE, one protocol),
`engine` (one cycle), `supervisor` (the loop, failure and restart), `manager`
(the one owner of all engine tasks, made of `manager_runs`, `manager_lifecycle`,
`manager_starts`, `manager_fleet`, `manager_status` and `manager_dry_runs`), `watch`
(bounded fan-out to watchers). No module here imports grpc, SQL or ccxt.

The engine reaches the outside only through ports (protocols and the values they
carry), each injected by the daemon's wiring: `market_ports` (market data, all a
PAPER engine reads), `order_ports` (a LIVE engine's orders), `account_ports` (LIVE
perpetual, margin and option accounts), `store_ports` (what survives a restart,
`ctsd.store`), `lease_ports` (ownership in a fleet, `ctsd.fleet`) and `backend`
(per connection, checks it may run an engine and hands out its clients).

Error contract for every port method: raise `ctsd.errors.TemporaryError` subclasses
(Unavailable, ResourceExhausted) for what may succeed on retry, `ClientError`
subclasses when the venue refuses the request itself (an order rejected for
funds or size; NotFound for an order it does not know), and nothing raw from
ccxt or aiohttp. The exchange layer's `ExchangeFailure`s already are these.
"""
