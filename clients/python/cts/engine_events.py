"""Reading WatchEngines events without caring how the daemon grouped them."""

from __future__ import annotations

from collections.abc import Sequence

from cts.v1 import engine_service_pb2 as pb


def changed_engines(event: pb.WatchEnginesResponse) -> Sequence[pb.Engine]:
    """The engines an event reports as changed, oldest first.

    The daemon sends one change as `changed` and several that queued up as
    `changes`; a snapshot or heartbeat reports none.
    """
    kind = event.WhichOneof("event")
    if kind == "changed":
        return (event.changed,)
    if kind == "changes":
        return event.changes.engines
    return ()
