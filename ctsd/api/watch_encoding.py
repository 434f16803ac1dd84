"""WatchEngines messages as bytes, each engine status serialized once for all watchers.

With hundreds of watchers, building and serializing one message per watcher per
change costs more than everything else the daemon does: 100 engines cycling
once a second make 50,000 messages a second for 500 watchers. So a status is
serialized the first time any watcher needs it and the bytes are shared; a
message is spliced from them in protobuf's wire form (a length-delimited field is
its tag, its length and its bytes, and repeated fields concatenate: the format
guarantees both). gRPC writes the bytes unchanged (`ctsd.api.pre_encoded`).
"""

from __future__ import annotations

from collections import OrderedDict

from cts.v1 import engine_service_pb2 as pb
from ctsd.api.engine_codec import encode_engine, encode_heartbeat
from ctsd.engine.status import EngineStatus
from ctsd.engine.watch import Changed, Heartbeat, Queued, Snapshot

_EVENT = pb.WatchEnginesResponse.DESCRIPTOR.fields_by_name
_SNAPSHOT = _EVENT["snapshot"].number
_CHANGED = _EVENT["changed"].number
_CHANGES = _EVENT["changes"].number
_SNAPSHOT_ENGINES = pb.EngineSnapshot.DESCRIPTOR.fields_by_name["engines"].number
_SNAPSHOT_RESYNC = pb.EngineSnapshot.DESCRIPTOR.fields_by_name["resync"].number
_CHANGES_ENGINES = pb.EngineChanges.DESCRIPTOR.fields_by_name["engines"].number

_LENGTH_DELIMITED = 2
_VARINT = 0


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def message_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: what a sub-message or one repeated element is on the wire."""
    return varint(number << 3 | _LENGTH_DELIMITED) + varint(len(payload)) + payload


_ENGINES = _CHANGES_ENGINES
assert _SNAPSHOT_ENGINES == _ENGINES  # one framed form of an engine serves both lists


class WatchEncoder:
    """Turns what a watcher reads into the bytes of one WatchEnginesResponse.

    Statuses are immutable and published once, so their identity is the cache
    key; an entry keeps its status alive, so an id is never reused while cached.
    Each is kept serialized and framed as an element of a repeated `engines` field,
    so a message is one join. Whole messages are cached too, by the identity of
    what was read: every watcher that is up to date reads the same tuple of a
    frame (and the same snapshot tuple), so 500 watchers cost one encoding.
    Bounded: at most `capacity` statuses and `messages` messages, oldest dropped first.
    """

    def __init__(self, capacity: int = 4096, messages: int = 16) -> None:
        self._capacity = capacity
        self._engines: OrderedDict[int, tuple[EngineStatus, bytes, bytes]] = OrderedDict()
        self._max_messages = messages
        self._messages: OrderedDict[tuple[int, bool], tuple[object, bytes]] = OrderedDict()

    def engine(self, status: EngineStatus) -> bytes:
        """The serialized `Engine` message for `status`."""
        return self._cached(status)[1]

    def _element(self, status: EngineStatus) -> bytes:
        return self._cached(status)[2]

    def _cached(self, status: EngineStatus) -> tuple[EngineStatus, bytes, bytes]:
        found = self._engines.get(id(status))
        if found is not None and found[0] is status:
            return found
        encoded = encode_engine(status).SerializeToString()
        entry = self._engines[id(status)] = (status, encoded, message_field(_ENGINES, encoded))
        if len(self._engines) > self._capacity:
            self._engines.popitem(last=False)
        return entry

    def encode(self, read: Snapshot | tuple[Queued, ...]) -> bytes:
        """One message for a snapshot or a batch of queued events (see `_encode`)."""
        source, resync = (read.statuses, read.resync) if isinstance(read, Snapshot) else (
            read, False)
        key = (id(source), resync)
        found = self._messages.get(key)
        if found is not None and found[0] is source:
            return found[1]
        encoded = self._encode(read)
        self._messages[key] = (source, encoded)
        if len(self._messages) > self._max_messages:
            self._messages.popitem(last=False)
        return encoded

    def _encode(self, read: Snapshot | tuple[Queued, ...]) -> bytes:
        """Heartbeats in a batch with changes are dropped: a change is a sign of life
        too. Of heartbeats alone, the latest is sent."""
        if isinstance(read, Snapshot):
            engines = b"".join(self._element(s) for s in read.statuses)
            resync = varint(_SNAPSHOT_RESYNC << 3 | _VARINT) + b"\x01" if read.resync else b""
            return message_field(_SNAPSHOT, engines + resync)
        changes = [e.status for e in read if isinstance(e, Changed)]
        if len(changes) == 1:
            return message_field(_CHANGED, self.engine(changes[0]))
        if changes:
            return message_field(_CHANGES, b"".join(self._element(s) for s in changes))
        beat = read[-1]
        assert isinstance(beat, Heartbeat)
        return pb.WatchEnginesResponse(heartbeat=encode_heartbeat(beat)).SerializeToString()
