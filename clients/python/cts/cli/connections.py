"""`cts connections ...`: one handler per command, each one RPC (list may page).

Handlers shape a request from the parsed arguments, call the daemon, and
render the answer. Validation is the daemon's: the CLI checks only what it
must know before calling (is there a secret? is there anything to change?).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from google.protobuf import field_mask_pb2

from cts.cli import connection_tests, enums, views
from cts.cli.client import Context
from cts.cli.errors import EXIT_OK, UsageError
from cts.cli.filters import quote
from cts.cli.output import JSON, dump_json, message_to_json
from cts.cli.secrets_input import PROMPT, Secrets, add_secret_options, chosen_source, read_secrets
from cts.v1 import connection_pb2, connection_service_pb2

Handler = Callable[[argparse.Namespace, Context], int]

API_TYPE = connection_pb2.ApiType
MARGIN_MODE = connection_pb2.MarginMode
POSITION_MODE = connection_pb2.PositionMode
MARKET_DATA = connection_pb2.MarketDataMethod


def _enum_type(enum_type: enums.ProtoEnum) -> Callable[[str], int]:
    """An argparse `type=` that maps `spot` to API_TYPE_SPOT and explains a bad word."""

    def parse(word: str) -> int:
        try:
            return enums.parse(enum_type, word)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def _add_enum_option(
    parser: argparse.ArgumentParser,
    flag: str,
    dest: str,
    enum_type: enums.ProtoEnum,
    summary: str,
    *,
    required: bool = False,
) -> None:
    words = enums.choices(enum_type)
    parser.add_argument(
        flag,
        dest=dest,
        type=_enum_type(enum_type),
        metavar="{" + ",".join(words) + "}",
        required=required,
        help=summary,
    )


def _add_settings_options(parser: argparse.ArgumentParser, *, creating: bool) -> None:
    """The mutable settings `add` and `edit` share; on edit, an option left out is left as is."""
    parser.add_argument(
        "--name",
        dest="display_name",
        metavar="NAME",
        required=creating,
        help="display name, unique among connections",
    )
    _add_enum_option(
        parser, "--api-type", "api_type", API_TYPE, "the market to trade on", required=creating
    )
    parser.add_argument(
        "--testnet",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="target the exchange's testnet",
    )
    _add_enum_option(parser, "--margin-mode", "margin_mode", MARGIN_MODE, "margin sharing")
    _add_enum_option(parser, "--position-mode", "position_mode", POSITION_MODE, "futures positions")
    _add_enum_option(parser, "--market-data", "market_data", MARKET_DATA, "market data transport")
    parser.add_argument(
        "--api-key", metavar="KEY", help="the exchange API key (not secret; add prompts if omitted)"
    )


def _configure_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exchange", help="only this exchange (ccxt id)")
    _add_enum_option(p, "--api-type", "api_type", API_TYPE, "only this market")
    state = p.add_mutually_exclusive_group()
    state.add_argument(
        "--enabled", dest="enabled", action="store_true", default=None, help="only enabled ones"
    )
    state.add_argument("--disabled", dest="enabled", action="store_false", help="only disabled")
    p.add_argument("--filter", dest="raw_filter", metavar="RAW", help="AIP-160 filter, ANDed")
    p.add_argument(
        "--page-size", type=int, default=0, metavar="N", help="connections per RPC (daemon default)"
    )
    p.add_argument("--page-token", default="", metavar="TOKEN", help="resume from this page")
    p.add_argument(
        "--all-pages",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="follow next_page_token to the end (default); --no-all-pages fetches one page",
    )


def _configure_add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exchange", required=True, help="ccxt id: binance, bybit, okx, kraken")
    p.add_argument(
        "--id", dest="connection_id", metavar="ID", default="", help="id to use (default: random)"
    )
    _add_settings_options(p, creating=True)
    p.add_argument(
        "--disabled", dest="enabled", action="store_false", default=True, help="create it disabled"
    )
    p.add_argument("--dry-run", action="store_true", help="validate only; store nothing")
    add_secret_options(p)


def _configure_edit(p: argparse.ArgumentParser) -> None:
    _add_id(p)
    _add_settings_options(p, creating=False)
    state = p.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_true", default=None)
    state.add_argument("--disable", dest="enabled", action="store_false")
    _add_etag(p)
    add_secret_options(p)


def _configure_rm(p: argparse.ArgumentParser) -> None:
    _add_id(p)
    p.add_argument("--force", action="store_true", help="also delete a predefined connection")
    _add_etag(p)


def _configure_toggle(enabled: bool) -> Callable[[argparse.ArgumentParser], None]:
    def configure(p: argparse.ArgumentParser) -> None:
        _add_id(p)
        _add_etag(p)
        p.set_defaults(enabled=enabled)

    return configure


def _add_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", metavar="ID", help="connection id or connections/ID")


def _add_etag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--etag", default="", help="fail with ABORTED if the connection changed")


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add `connections` and its commands to the top-level parser."""
    group = subparsers.add_parser(
        "connections",
        aliases=["connection", "conn"],
        parents=[common],
        help="manage exchange connections",
        description="Manage exchange connections: accounts with sealed API credentials.",
    )
    commands = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
    table: list[tuple[str, list[str], Handler, str, Callable[[argparse.ArgumentParser], None]]] = [
        ("list", ["ls"], list_connections, "list connections", _configure_list),
        ("get", [], get_connection, "show one connection", _add_id),
        ("add", ["create"], add_connection, "create a connection", _configure_add),
        ("edit", [], edit_connection, "change settings or credentials", _configure_edit),
        ("rm", ["delete"], delete_connection, "delete a connection", _configure_rm),
        ("enable", [], set_enabled, "enable a connection", _configure_toggle(True)),
        ("disable", [], set_enabled, "disable a connection", _configure_toggle(False)),
        (
            "test",
            [],
            connection_tests.test_connections,
            "test one connection (live log) or many (--all, --exchange)",
            connection_tests.configure,
        ),
    ]
    for name, aliases, handler, summary, configure in table:
        parser = commands.add_parser(
            name, parents=[common], aliases=aliases, help=summary, description=summary
        )
        parser.set_defaults(handler=handler)
        configure(parser)


def build_filter(args: argparse.Namespace) -> str:
    """The AIP-160 filter for the list flags, ANDed with any `--filter` text."""
    clauses: list[str] = []
    if args.exchange:
        clauses.append(f"exchange = {quote(args.exchange)}")
    if args.api_type is not None:
        clauses.append(f"api_type = {enums.full_name(API_TYPE, args.api_type)}")
    if args.enabled is not None:
        clauses.append(f"enabled = {str(args.enabled).lower()}")
    if args.raw_filter:
        clauses.append(args.raw_filter)
    return " AND ".join(clauses)


def _fetch_pages(
    ctx: Context, request: connection_service_pb2.ListConnectionsRequest, all_pages: bool
) -> tuple[list[connection_pb2.Connection], str, int]:
    """The connections of one page, or of every page; plus the last token and the total."""
    found: list[connection_pb2.Connection] = []
    seen_tokens = {request.page_token}
    while True:
        response = ctx.connections.ListConnections(request, timeout=ctx.timeout)
        found.extend(response.connections)
        token = response.next_page_token
        # A token seen before would loop forever; stop and report it instead.
        if not all_pages or not token or token in seen_tokens:
            return found, token, response.total_size
        seen_tokens.add(token)
        request.page_token = token


def list_connections(args: argparse.Namespace, ctx: Context) -> int:
    if args.page_size < 0:
        raise UsageError("--page-size must not be negative")
    request = connection_service_pb2.ListConnectionsRequest(
        filter=build_filter(args), page_size=args.page_size, page_token=args.page_token
    )
    found, token, total = _fetch_pages(ctx, request, args.all_pages)
    if ctx.output == JSON:
        ctx.emit(dump_json(views.connections_document(found, token, total)))
        return EXIT_OK
    if found:
        ctx.emit(views.connections_table(found))
    else:
        ctx.console.stderr.write("No connections found.\n")
    if token:
        ctx.console.stderr.write(f"More connections: --page-token {token}\n")
    return EXIT_OK


def _emit_connection(ctx: Context, connection: connection_pb2.Connection) -> None:
    if ctx.output == JSON:
        ctx.emit(dump_json(message_to_json(connection)))
    else:
        ctx.emit(views.connection_detail(connection))


def get_connection(args: argparse.Namespace, ctx: Context) -> int:
    request = connection_service_pb2.GetConnectionRequest(name=views.resource_name(args.id))
    _emit_connection(ctx, ctx.connections.GetConnection(request, timeout=ctx.timeout))
    return EXIT_OK


def _apply_settings(args: argparse.Namespace, connection: connection_pb2.Connection) -> list[str]:
    """Copy the settings the user gave onto `connection`; return their field-mask paths."""
    paths: list[str] = []
    settings: list[tuple[str, object]] = [
        ("display_name", args.display_name),
        ("api_type", args.api_type),
        ("testnet", args.testnet),
        ("margin_mode", args.margin_mode),
        ("position_mode", args.position_mode),
        ("market_data_method", args.market_data),
        ("enabled", args.enabled),
    ]
    for field, value in settings:
        if value is not None:
            setattr(connection, field, value)
            paths.append(field)
    return paths


def _exchange_passphrase_prompt(ctx: Context, exchange: str) -> str | None:
    """Ask for a passphrase only if the daemon says this exchange needs one (OKX)."""
    request = connection_service_pb2.ListExchangesRequest()
    response = ctx.connections.ListExchanges(request, timeout=ctx.timeout)
    for known in response.exchanges:
        if known.exchange_id == exchange and known.passphrase_required:
            return "Passphrase: "
    return None


def add_connection(args: argparse.Namespace, ctx: Context) -> int:
    # Settle where the secret comes from before asking anything, so a script
    # without one fails at once (exit 2) and a person is never asked in vain.
    source = chosen_source(args) or (PROMPT if ctx.console.is_tty else None)
    if source is None:
        raise UsageError(
            "no API secret: stdin is not a terminal, so give --secret-stdin or --secret-file FILE"
        )
    if args.api_key is None and not ctx.console.is_tty:
        raise UsageError("no API key: give --api-key KEY (stdin is not a terminal)")
    passphrase_prompt = (
        _exchange_passphrase_prompt(ctx, args.exchange) if source == PROMPT else None
    )
    api_key = args.api_key
    if api_key is None:
        api_key = ctx.console.read_line("API key: ")
    secrets = read_secrets(source, args, ctx.console, passphrase_prompt)
    connection = connection_pb2.Connection(
        exchange=args.exchange,
        credentials=connection_pb2.Credentials(
            api_key=api_key, api_secret=secrets.api_secret, passphrase=secrets.passphrase or ""
        ),
    )
    _apply_settings(args, connection)
    request = connection_service_pb2.CreateConnectionRequest(
        connection=connection, connection_id=args.connection_id, validate_only=args.dry_run
    )
    _emit_connection(ctx, ctx.connections.CreateConnection(request, timeout=ctx.timeout))
    return EXIT_OK


def _stored_passphrase_prompt(ctx: Context, name: str) -> str | None:
    """On edit, offer to replace the passphrase only if the connection has one."""
    request = connection_service_pb2.GetConnectionRequest(name=name)
    stored = ctx.connections.GetConnection(request, timeout=ctx.timeout)
    if stored.credentials_info.passphrase_set:
        return "Passphrase (empty keeps the stored one): "
    return None


def _apply_credentials(
    connection: connection_pb2.Connection, api_key: str | None, secrets: Secrets | None
) -> list[str]:
    paths: list[str] = []
    if api_key is not None:
        connection.credentials.api_key = api_key
        paths.append("credentials.api_key")
    if secrets is not None:
        connection.credentials.api_secret = secrets.api_secret
        paths.append("credentials.api_secret")
        if secrets.passphrase is not None:
            connection.credentials.passphrase = secrets.passphrase
            paths.append("credentials.passphrase")
    return paths


def edit_connection(args: argparse.Namespace, ctx: Context) -> int:
    """UpdateConnection with a mask of exactly the fields given, so nothing else is touched."""
    name = views.resource_name(args.id)
    connection = connection_pb2.Connection(name=name, etag=args.etag)
    paths = _apply_settings(args, connection)
    source = chosen_source(args)
    secrets = None
    if source is not None:
        passphrase_prompt = _stored_passphrase_prompt(ctx, name) if source == PROMPT else None
        secrets = read_secrets(source, args, ctx.console, passphrase_prompt)
    paths += _apply_credentials(connection, args.api_key, secrets)
    if not paths:
        raise UsageError("nothing to change: give at least one setting or credential option")
    request = connection_service_pb2.UpdateConnectionRequest(
        connection=connection, update_mask=field_mask_pb2.FieldMask(paths=paths)
    )
    _emit_connection(ctx, ctx.connections.UpdateConnection(request, timeout=ctx.timeout))
    return EXIT_OK


def delete_connection(args: argparse.Namespace, ctx: Context) -> int:
    name = views.resource_name(args.id)
    request = connection_service_pb2.DeleteConnectionRequest(
        name=name, etag=args.etag, force=args.force
    )
    ctx.connections.DeleteConnection(request, timeout=ctx.timeout)
    if ctx.output == JSON:
        ctx.emit(dump_json({"name": name, "deleted": True}))
    else:
        ctx.emit(f"{name} deleted")
    return EXIT_OK


def set_enabled(args: argparse.Namespace, ctx: Context) -> int:
    request = connection_service_pb2.SetConnectionEnabledRequest(
        name=views.resource_name(args.id), enabled=args.enabled, etag=args.etag
    )
    connection = ctx.connections.SetConnectionEnabled(request, timeout=ctx.timeout)
    if ctx.output == JSON:
        ctx.emit(dump_json(message_to_json(connection)))
    else:
        ctx.emit(f"{connection.name} {'enabled' if connection.enabled else 'disabled'}")
    return EXIT_OK
