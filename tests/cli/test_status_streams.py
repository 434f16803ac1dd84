"""`cts status` shows the market-data hub's streams: one row each, with state, rate, data
age, reconnects, REST fallbacks, readers and the error of one that is not live."""

from __future__ import annotations

from google.protobuf import duration_pb2

from cts.cli.health import status_view
from cts.v1 import health_service_pb2 as hpb


def test_status_lists_every_stream_with_its_health() -> None:
    status = hpb.GetSystemStatusResponse(version="1", streams=[
        hpb.MarketStream(stream="binance:spot:ticker:BTC/USDT", state="live",
                         messages_per_second=1.0, data_age=duration_pb2.Duration(nanos=250_000_000),
                         reconnects=2, rest_fallbacks=3, consumers=10),
        hpb.MarketStream(stream="binance:spot:ticker:NOPE/USDT", state="failed",
                         error="binance does not list it"),
    ])
    text = status_view(status)
    header, live, failed = text.splitlines()[-3:]
    assert header.split()[:3] == ["STREAM", "STATE", "MSG/S"]
    assert live.split()[:3] == ["binance:spot:ticker:BTC/USDT", "live", "1.0"]
    assert live.split()[-4:] == ["2", "3", "10", "-"]
    assert failed.split()[:2] == ["binance:spot:ticker:NOPE/USDT", "failed"]
    assert failed.endswith("binance does not list it")
