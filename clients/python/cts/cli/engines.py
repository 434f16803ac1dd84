"""`cts engine ...`: start, stop and inspect the trade engine of a connection.

    cts engine start main --strategy sma_cross --symbol BTC/USDT \\
        --param fast=5 --param slow=20 --param quote_amount=100 --interval 5s
    cts engine status main            # one engine, every field
    cts engine list                   # every engine, one row each
    cts engine orders main            # its orders (all pages), oldest first
    cts engine trades main            # its fills (all pages), oldest first
    cts engine test main [CONFIG]     # a dry cycle: what the strategy would do now
    cts engine watch --duration 10    # a live table; JSON lines when piped or with -o json
    cts engine stop main

Engines trade on paper unless `--live` is given; `--live` asks for
confirmation on a terminal and, without one, insists on `--yes`, because a
script that started real trading by accident cannot be asked afterwards.
Answering no exits 2, like a usage error: nothing was sent to the daemon.
Config values are passed through as typed: the daemon validates them and
names each bad field (exit 1).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import duration_pb2

from cts.cli import engine_views
from cts.cli.client import Context, open_channel
from cts.cli.errors import EXIT_OK, EXIT_USAGE, UsageError
from cts.cli.output import JSON, dump_json, message_to_json
from cts.engine_events import changed_engines
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as pb_grpc

Handler = Callable[[argparse.Namespace, Context], int]
EngineHandler = Callable[[argparse.Namespace, Context, pb_grpc.EngineServiceStub], int]

PAGE_SIZE = 1000
"""The daemon's largest page: fewest round trips when following every page."""

_INTERVAL = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


# --- argument types -------------------------------------------------------------------------


def parse_interval(text: str) -> duration_pb2.Duration:
    """`5s`, `500ms`, `1m`, `1h` or bare seconds (`2.5`) as a Duration; more than zero."""
    match = _INTERVAL.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 5s, 500ms, 1m)")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    interval = duration_pb2.Duration()
    interval.FromNanoseconds(round(seconds * 1e9))
    return interval


def parse_pair(text: str) -> tuple[str, str]:
    """`KEY=VALUE`, split at the first `=`; the key must not be empty."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def parse_leverage(text: str) -> tuple[str, int]:
    """`SYMBOL=N`: the leverage of one perpetual (the daemon checks the range)."""
    symbol, value = parse_pair(text)
    try:
        return symbol, int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected SYMBOL=N with a whole N, got {text!r}") from None


def parse_seconds(text: str) -> float:
    """`--duration`: the same spellings as `--interval` (`2`, `2s`, `1m`), in seconds."""
    return float(parse_interval(text).ToNanoseconds()) / 1e9


# --- parser ---------------------------------------------------------------------------------


def _add_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", metavar="ID", help="connection id, connections/ID or its engine name")


def _add_config_options(p: argparse.ArgumentParser, *, for_start: bool) -> None:
    """The EngineConfig flags `start` and `test` share; `test` without any uses the running one."""
    config = p.add_argument_group("engine config")
    config.add_argument(
        "--strategy", required=for_start, help="strategy name, e.g. sma_cross or grid"
    )
    config.add_argument(
        "--symbol",
        dest="symbols",
        action="append",
        default=[],
        metavar="SYMBOL",
        help="unified symbol to trade, e.g. BTC/USDT (repeatable)",
    )
    config.add_argument(
        "--param",
        dest="params",
        action="append",
        type=parse_pair,
        default=[],
        metavar="KEY=VALUE",
        help="strategy parameter (repeatable), e.g. --param fast=5",
    )
    config.add_argument(
        "--interval", type=parse_interval, help="time between cycles: 5s, 500ms, 1m (default 60s)"
    )
    config.add_argument(
        "--live", action="store_true", help="place real orders (default: paper trading)"
    )
    risk = p.add_argument_group("risk limits (notionals in the quote asset; unset: off)")
    risk.add_argument("--max-order-notional", metavar="N", help="largest notional of one order")
    risk.add_argument("--max-position-notional", metavar="N", help="largest position per symbol")
    risk.add_argument("--max-open-orders", type=int, metavar="N", help="orders open at once (50)")
    risk.add_argument(
        "--max-orders-per-minute", type=int, metavar="N", help="orders placed per minute (30)"
    )
    risk.add_argument("--daily-loss-limit", metavar="N", help="loss of the day that stops it")
    perps = p.add_argument_group("perpetual futures")
    perps.add_argument(
        "--leverage",
        dest="leverage",
        action="append",
        type=parse_leverage,
        default=[],
        metavar="SYMBOL=N",
        help="leverage set on the venue at start, e.g. BTC/USDT:USDT=5 (repeatable)",
    )
    perps.add_argument(
        "--on-position-mismatch",
        choices=("stop", "adopt"),
        help="LIVE: when the venue's position differs from the ledger (default stop)",
    )
    paper = p.add_argument_group("paper account")
    paper.add_argument(
        "--paper-balance",
        dest="balances",
        action="append",
        type=parse_pair,
        default=[],
        metavar="ASSET=AMOUNT",
        help="starting balance (repeatable; default 10000 USDT)",
    )
    paper.add_argument("--slippage-bps", metavar="BPS", help="market-order slippage (default 5)")


def _configure_start(p: argparse.ArgumentParser) -> None:
    _add_id(p)
    _add_config_options(p, for_start=True)
    p.add_argument("-y", "--yes", action="store_true", help="start --live without asking")


def _configure_test(p: argparse.ArgumentParser) -> None:
    _add_id(p)
    _add_config_options(p, for_start=False)


def _configure_orders(p: argparse.ArgumentParser) -> None:
    _add_id(p)
    p.add_argument("--open", dest="open_only", action="store_true", help="only pending and open")


def _configure_watch(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--duration",
        type=parse_seconds,
        metavar="SECONDS",
        help="stop after this long (default: until Ctrl-C)",
    )


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add `engine` and its commands to the top-level parser."""
    group = subparsers.add_parser(
        "engine",
        aliases=["engines"],
        parents=[common],
        help="run and inspect trade engines",
        description="Run and inspect the trade engine of each connection (paper unless --live).",
    )
    commands = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
    table: list[tuple[str, list[str], Handler, str, Callable[[argparse.ArgumentParser], None]]] = [
        ("start", [], _with_stub(start_engine), "start a connection's engine", _configure_start),
        ("stop", [], _with_stub(stop_engine), "stop an engine, cancel its orders", _add_id),
        ("status", ["get"], _with_stub(engine_status), "show one engine", _add_id),
        ("list", ["ls"], _with_stub(list_engines), "list every engine", lambda p: None),
        ("orders", [], _with_stub(list_orders), "list an engine's orders", _configure_orders),
        ("trades", [], _with_stub(list_trades), "list an engine's fills", _add_id),
        ("test", [], _with_stub(test_engine), "dry cycle: what it would do now", _configure_test),
        ("watch", [], _with_stub(watch_engines), "a live-updating table", _configure_watch),
    ]
    for name, aliases, handler, summary, configure in table:
        parser = commands.add_parser(
            name, parents=[common], aliases=aliases, help=summary, description=summary
        )
        parser.set_defaults(handler=handler)
        configure(parser)


@contextmanager
def _engine_stub(ctx: Context) -> Iterator[pb_grpc.EngineServiceStub]:
    """An EngineService stub on its own channel to the daemon the command targets.

    `Context` carries the ConnectionService and HealthService stubs only; the
    channel they share is not reachable from here, so engine commands open one.
    """
    with open_channel(ctx.address, ctx.security) as channel:
        yield pb_grpc.EngineServiceStub(channel)


def _with_stub(handler: EngineHandler) -> Handler:
    def run(args: argparse.Namespace, ctx: Context) -> int:
        with _engine_stub(ctx) as stub:
            return handler(args, ctx, stub)

    return run


# --- config ---------------------------------------------------------------------------------


def _unique(pairs: list[tuple[str, str]], flag: str) -> dict[str, str]:
    """The pairs as a dict; a key given twice is a usage error, not a silent last-one-wins."""
    found: dict[str, str] = {}
    for key, value in pairs:
        if key in found:
            raise UsageError(f"{flag} {key} given twice")
        found[key] = value
    return found


def _risk_limits(args: argparse.Namespace) -> pb.RiskLimits:
    risk = pb.RiskLimits(
        max_order_notional=args.max_order_notional or "",
        max_position_notional=args.max_position_notional or "",
        daily_loss_limit=args.daily_loss_limit or "",
    )
    if args.max_open_orders is not None:
        risk.max_open_orders = args.max_open_orders
    if args.max_orders_per_minute is not None:
        risk.max_orders_per_minute = args.max_orders_per_minute
    return risk


_CONFIG_FLAGS = (
    "strategy",
    "symbols",
    "params",
    "interval",
    "live",
    "max_order_notional",
    "max_position_notional",
    "max_open_orders",
    "max_orders_per_minute",
    "daily_loss_limit",
    "balances",
    "slippage_bps",
    "leverage",
    "on_position_mismatch",
)


def build_config(args: argparse.Namespace) -> pb.EngineConfig | None:
    """The EngineConfig the flags describe; None when no config flag was given at all."""
    if not any(getattr(args, flag) not in (None, False, []) for flag in _CONFIG_FLAGS):
        return None
    config = pb.EngineConfig(
        strategy=args.strategy or "",
        params=_unique(args.params, "--param"),
        symbols=args.symbols,
        mode=pb.TRADING_MODE_LIVE if args.live else pb.TRADING_MODE_PAPER,
        risk=_risk_limits(args),
        paper=pb.PaperSettings(
            balances=_unique(args.balances, "--paper-balance"), slippage_bps=args.slippage_bps or ""
        ),
    )
    for symbol, leverage in args.leverage:
        if symbol in config.leverage:
            raise UsageError(f"--leverage {symbol} given twice")
        config.leverage[symbol] = leverage
    if args.on_position_mismatch:
        config.on_position_mismatch = _MISMATCH_POLICIES[args.on_position_mismatch]
    if args.interval is not None:
        config.interval.CopyFrom(args.interval)
    return config


_MISMATCH_POLICIES = {"stop": pb.POSITION_MISMATCH_POLICY_STOP,
                      "adopt": pb.POSITION_MISMATCH_POLICY_ADOPT}


def _confirm_live(args: argparse.Namespace, ctx: Context, name: str) -> bool:
    """Whether the user really wants real orders; never asks a script, which must say --yes."""
    if not args.live or args.yes:
        return True
    if not ctx.console.is_tty:
        raise UsageError("--live places real orders: confirm with --yes (stdin is not a terminal)")
    answer = ctx.console.read_line(f"Start {name} LIVE, placing real orders? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


# --- handlers -------------------------------------------------------------------------------


def _emit_engine(ctx: Context, engine: pb.Engine) -> None:
    if ctx.output == JSON:
        ctx.emit(dump_json(message_to_json(engine)))
    else:
        ctx.emit(engine_views.engine_detail(engine))


def start_engine(args: argparse.Namespace, ctx: Context, stub: pb_grpc.EngineServiceStub) -> int:
    name = engine_views.engine_name(args.id)
    config = build_config(args)
    if config is None:  # argparse requires --strategy; kept for callers that bypass it
        raise UsageError("give the engine config: --strategy, --symbol, --param ...")
    if not _confirm_live(args, ctx, name):
        ctx.console.stderr.write("Not started: nothing was sent to the daemon.\n")
        return EXIT_USAGE
    request = pb.StartEngineRequest(name=name, config=config)
    _emit_engine(ctx, stub.StartEngine(request, timeout=ctx.timeout))
    return EXIT_OK


def stop_engine(args: argparse.Namespace, ctx: Context, stub: pb_grpc.EngineServiceStub) -> int:
    request = pb.StopEngineRequest(name=engine_views.engine_name(args.id))
    _emit_engine(ctx, stub.StopEngine(request, timeout=ctx.timeout))
    return EXIT_OK


def engine_status(args: argparse.Namespace, ctx: Context, stub: pb_grpc.EngineServiceStub) -> int:
    request = pb.GetEngineRequest(name=engine_views.engine_name(args.id))
    _emit_engine(ctx, stub.GetEngine(request, timeout=ctx.timeout))
    return EXIT_OK


M = TypeVar("M")


def _emit_listing(ctx: Context, items: Sequence[M], document: Callable[[], dict[str, Any]],
                  table: Callable[[Sequence[M]], str], what: str) -> int:
    """A listing as its JSON document, or as a table, or "No <what>." on stderr."""
    if ctx.output == JSON:
        ctx.emit(dump_json(document()))
    elif items:
        ctx.emit(table(items))
    else:
        ctx.console.stderr.write(f"No {what}.\n")
    return EXIT_OK


def list_engines(args: argparse.Namespace, ctx: Context, stub: pb_grpc.EngineServiceStub) -> int:
    engines = stub.ListEngines(pb.ListEnginesRequest(), timeout=ctx.timeout).engines
    return _emit_listing(ctx, engines, lambda: engine_views.engines_document(engines),
                         engine_views.engines_table, "engines")


class _Page(Protocol):
    @property
    def next_page_token(self) -> str: ...


class _PagedRequest(Protocol):
    page_token: str


P = TypeVar("P", bound=_Page)


def all_pages(fetch: Callable[[], P], request: _PagedRequest) -> Iterator[P]:
    """Every page `fetch` returns while it advances `request.page_token`.

    A token seen before would loop forever; the pages so far are returned instead.
    """
    seen = {request.page_token}
    while True:
        page = fetch()
        yield page
        token = page.next_page_token
        if not token or token in seen:
            return
        seen.add(token)
        request.page_token = token


def list_orders(args: argparse.Namespace, ctx: Context, stub: pb_grpc.EngineServiceStub) -> int:
    request = pb.ListOrdersRequest(
        parent=engine_views.engine_name(args.id), page_size=PAGE_SIZE, open_only=args.open_only
    )
    pages = all_pages(lambda: stub.ListOrders(request, timeout=ctx.timeout), request)
    orders = [order for page in pages for order in page.orders]
    return _emit_listing(ctx, orders, lambda: {"orders": [message_to_json(o) for o in orders]},
                         engine_views.orders_table, "orders")


def list_trades(args: argparse.Namespace, ctx: Context, stub: pb_grpc.EngineServiceStub) -> int:
    request = pb.ListTradesRequest(parent=engine_views.engine_name(args.id), page_size=PAGE_SIZE)
    pages = all_pages(lambda: stub.ListTrades(request, timeout=ctx.timeout), request)
    trades = [trade for page in pages for trade in page.trades]
    return _emit_listing(ctx, trades, lambda: {"trades": [message_to_json(t) for t in trades]},
                         engine_views.trades_table, "trades")


def test_engine(args: argparse.Namespace, ctx: Context, stub: pb_grpc.EngineServiceStub) -> int:
    request = pb.TestEngineRequest(name=engine_views.engine_name(args.id))
    config = build_config(args)
    if config is not None:
        request.config.CopyFrom(config)
    response = stub.TestEngine(request, timeout=ctx.timeout)
    if ctx.output == JSON:
        ctx.emit(dump_json(message_to_json(response)))
    else:
        ctx.emit(engine_views.dry_cycle(response))
    return EXIT_OK


# --- watch ----------------------------------------------------------------------------------


class EngineBoard:
    """The engines as the watch stream has described them so far, newest version wins."""

    def __init__(self) -> None:
        self._engines: dict[str, pb.Engine] = {}

    def apply(self, event: pb.WatchEnginesResponse) -> str:
        """Fold one event in; return a short note on what it was, for the status line."""
        kind = event.WhichOneof("event")
        if kind == "snapshot":
            self._engines = {e.name: e for e in event.snapshot.engines}
            return "resync" if event.snapshot.resync else "snapshot"
        changed = changed_engines(event)
        for engine in changed:
            self._fold(engine)
        if changed:
            return f"changed {', '.join(sorted({engine_views.engine_id(e.name) for e in changed}))}"
        return "heartbeat"

    def _fold(self, engine: pb.Engine) -> None:
        known = self._engines.get(engine.name)
        if known is None or known.version <= engine.version:
            self._engines[engine.name] = engine

    def engines(self) -> list[pb.Engine]:
        return [self._engines[name] for name in sorted(self._engines)]


def watch_engines(args: argparse.Namespace, ctx: Context, stub: pb_grpc.EngineServiceStub) -> int:
    """Until --duration ends it (the call's deadline), Ctrl-C, or the daemon closes the stream.

    A terminal gets the table redrawn in place on every event; anything else
    (a pipe, a file, `-o json`) gets one JSON line per event, flushed at once.
    """
    live_table = ctx.output != JSON and ctx.stdout.isatty()
    board = EngineBoard()
    stream = stub.WatchEngines(pb.WatchEnginesRequest(), timeout=args.duration)
    try:
        for event in stream:
            note = board.apply(event)
            if live_table:
                ctx.stdout.write(engine_views.watch_screen(board.engines(), note))
            else:
                ctx.stdout.write(engine_views.json_line(event) + "\n")
            ctx.stdout.flush()
    except grpc.RpcError as err:
        # --duration is the call's deadline: reaching it is how the watch ends, not a failure.
        deadline = isinstance(err, grpc.Call) and err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        if not (deadline and args.duration is not None):
            raise
    except KeyboardInterrupt:  # the ordinary way to leave a watch without --duration
        stream.cancel()
    return EXIT_OK
