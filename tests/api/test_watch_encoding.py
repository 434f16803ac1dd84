"""The spliced WatchEngines bytes must parse as the message the generated code would build."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cts.v1 import engine_service_pb2 as pb
from ctsd.api.engine_codec import encode_engine
from ctsd.api.pre_encoded import bytes_or_serialized
from ctsd.api.watch_encoding import WatchEncoder, varint
from ctsd.engine.config import TradingMode
from ctsd.engine.status import EngineState, EngineStatus
from ctsd.engine.watch import Changed, Heartbeat, Snapshot


def status(connection_id: str, cycles: int) -> EngineStatus:
    return EngineStatus(connection_id, "e1", EngineState.RUNNING, TradingMode.PAPER, "grid",
                        ("BTC/USDT",), cycles=cycles, version=cycles,
                        realized_pnl=Decimal("1.5"), heartbeat_ms=1_700_000_000_000)


def parse(data: bytes) -> pb.WatchEnginesResponse:
    return pb.WatchEnginesResponse.FromString(data)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16_383, 16_384, 2**35])
def test_varints_match_protobuf(value: int) -> None:
    assert pb.EngineSnapshot(engines=[pb.Engine(cycles=value)]).SerializeToString() == (
        b"\x0a" + varint(len(pb.Engine(cycles=value).SerializeToString()))
        + pb.Engine(cycles=value).SerializeToString())


@pytest.mark.parametrize("resync", [False, True])
def test_a_snapshot_parses_as_built_by_protobuf(resync: bool) -> None:
    statuses = (status("a", 1), status("b", 300))
    expected = pb.WatchEnginesResponse(snapshot=pb.EngineSnapshot(
        engines=[encode_engine(s) for s in statuses], resync=resync))
    assert parse(WatchEncoder().encode(Snapshot(statuses, resync))) == expected


def test_one_change_is_a_changed_event_and_several_are_one_changes_event() -> None:
    encoder = WatchEncoder()
    a1, b1, a2 = status("a", 1), status("b", 1), status("a", 2)
    assert parse(encoder.encode((Changed(a1),))) == pb.WatchEnginesResponse(
        changed=encode_engine(a1))
    batch = parse(encoder.encode((Changed(a1), Heartbeat(7), Changed(b1), Changed(a2))))
    assert batch == pb.WatchEnginesResponse(changes=pb.EngineChanges(
        engines=[encode_engine(s) for s in (a1, b1, a2)]))  # the heartbeat is redundant


def test_heartbeats_alone_send_the_latest() -> None:
    event = parse(WatchEncoder().encode((Heartbeat(1_000), Heartbeat(2_000))))
    assert event.heartbeat.time.ToMilliseconds() == 2_000


def test_a_status_is_serialized_once_and_the_cache_stays_bounded() -> None:
    encoder = WatchEncoder(capacity=2)
    first = status("a", 1)
    assert encoder.engine(first) is encoder.engine(first)
    for cycles in range(2, 10):
        encoder.engine(status("a", cycles))
    assert len(encoder._engines) == 2
    again = encoder.engine(first)  # evicted: encoded afresh, same content
    assert pb.Engine.FromString(again) == encode_engine(first)


def test_the_serializer_passes_bytes_and_serializes_messages() -> None:
    serialize = bytes_or_serialized(pb.Engine.SerializeToString)
    assert serialize(b"\x08\x01") == b"\x08\x01"
    assert serialize(pb.Engine(cycles=1)) == pb.Engine(cycles=1).SerializeToString()


def test_a_batch_or_snapshot_read_by_many_watchers_is_encoded_once() -> None:
    encoder = WatchEncoder(messages=2)
    frame = (Changed(status("a", 1)), Changed(status("b", 1)))
    first = encoder.encode(frame)
    assert encoder.encode(frame) is first  # the same tuple: every up-to-date watcher
    statuses = (status("a", 1),)
    assert encoder.encode(Snapshot(statuses)) is encoder.encode(Snapshot(statuses))
    assert parse(encoder.encode(Snapshot(statuses, resync=True))).snapshot.resync
    assert len(encoder._messages) == 2  # bounded: the frame's entry was dropped first
    again = encoder.encode(frame)
    assert again == first and again is not first  # encoded afresh, the same bytes
