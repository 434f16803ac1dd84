"""The simulator's WebSocket APIs: Binance (spot, USDⓈ-M), Bybit v5, OKX v5, Kraken v2.

Unmodified `ccxt.pro` talks to them with only its URLs pointed at the simulator
(`ctsd.sim.ccxt_target.point_at_simulator` rewrites `urls['api']['ws']` too). The
paths are the venues' own, under `/<venue>`; where two hosts of one venue use the
same path, the host becomes a path segment (a `url_overrides` entry of the venue):

| production URL (ccxt 4.5.90)                  | simulator path                          |
|-----------------------------------------------|-----------------------------------------|
| wss://stream.binance.com:9443/ws[/…]          | /binance/stream/ws[/…], /stream/stream  |
| wss://fstream.binance.com/{public,market,private}/ws | /binance/fstream/{…}/ws[?listenKey=] |
| wss://ws-api.binance.com:443/ws-api/v3        | /binance/ws-api/v3                      |
| wss://stream.bybit.com/v5/public/{spot,linear} | /bybit/v5/public/{spot,linear}         |
| wss://stream.bybit.com/v5/private             | /bybit/v5/private                       |
| wss://ws.okx.com:443/ws/v5/{public,business,private} | /okx/ws/v5/{public,business,private} |
| wss://ws.kraken.com/v2, wss://ws-auth.kraken.com/v2 | /kraken/ws/v2, /kraken/ws-auth/v2  |

How it is built (docs/simulator-websockets.md has the per-venue detail):

- `hub.StreamHub`: every connection of one server and its one data loop, which
  polls the *topics* (`protocol.Topic`: one per venue format, channel, symbol and
  parameter, shared by all its subscribers) on the simulator's clock, renders each
  change once and queues it on every subscriber; it also runs heartbeats, applies
  the `WS_*` faults and fills resting orders of streamed accounts.
- `connection.WsConnection`: two bounded queues (replies and heartbeats apart from
  data, so a stall is silent), one writer task, the fault filters.
- `protocol`: `StreamProtocol` (paths, `WsLimits`, `Heartbeat` as data) and
  `Session` (one per connection: login, subscriptions, request parsing).
- `feeds`, `books`: ticker, candle, order-book and trade feeds, rendered per venue.
- `guard.WsGuard`: the limits, and the `ws_*` violation counters in `/admin/stats`.
- `tokens.StreamTokens`: listenKeys and Kraken tokens the REST APIs issue.
- one module per venue (`binance`, `bybit`, `okx`, `kraken`) and its `*_wire`.

Private events reach the streams through `ctsd.sim.events` the moment they happen,
so a stream shows an order or a fill exactly as REST shows it.
"""
