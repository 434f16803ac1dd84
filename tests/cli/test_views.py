"""How connections and exchanges look: table rows, detail view, JSON documents."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from cts.cli import views
from cts.cli.output import dump_json

from .fake_service import sample_connection, sample_exchanges


def test_resource_names_accept_the_id_or_the_full_name() -> None:
    assert views.resource_name("main") == "connections/main"
    assert views.resource_name("connections/main") == "connections/main"


def test_connection_row_shows_short_words_and_the_masked_hint() -> None:
    now = datetime.fromtimestamp(1_700_000_060 + 120, UTC)
    row = views.connection_row(sample_connection(), now)
    assert row == [
        "main",
        "Main account",
        "binance",
        "spot",
        "no",
        "yes",
        "****abcd",
        "never",
        "2m",
    ]


def test_connections_table_has_the_documented_headers() -> None:
    header = views.connections_table([sample_connection()]).splitlines()[0]
    assert re.split(r"\s{2,}", header) == list(views.CONNECTION_HEADERS)


def test_detail_lists_every_setting() -> None:
    text = views.connection_detail(sample_connection())
    assert "Name:" in text and "connections/main" in text
    assert "API type:       spot" in text
    assert "Margin mode:    -" in text
    assert "Last test:      never" in text
    assert "Created:        2023-11-14T22:13:20Z" in text


def test_list_document_always_has_the_same_keys() -> None:
    document = views.connections_document([], "", 0)
    assert json.loads(dump_json(document)) == {
        "connections": [],
        "next_page_token": "",
        "total_size": 0,
    }
    connection = views.connections_document([sample_connection()], "", 1)["connections"]
    assert isinstance(connection, list)
    first = connection[0]
    assert first["api_type"] == "API_TYPE_SPOT"
    assert first["testnet"] is False  # defaults are spelled out for scripts
    assert first["credentials_info"]["api_key_hint"] == "****abcd"


def test_exchange_rows_show_types_passphrase_and_limits() -> None:
    binance, okx = (views.exchange_row(e) for e in sample_exchanges().exchanges)
    assert binance == [
        "binance",
        "Binance",
        "spot,margin",
        "yes",
        "no",
        "request_weight 1200/1m ip weighted",
    ]
    assert okx[4] == "required"
    assert okx[5] == "-"
