"""Lets chosen server-streaming methods hand gRPC messages they serialized themselves.

A generated servicer's handler serializes every message it yields. A stream
that fans the same content out to many clients (WatchEngines) serializes once
and yields bytes; for its methods this interceptor swaps in a serializer that
passes bytes through and still serializes anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from ctsd.api.handlers import Handler, RewritingInterceptor


def bytes_or_serialized(serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes]:
    def serializer(message: Any) -> bytes:
        if isinstance(message, bytes):
            return message
        assert serialize is not None
        return serialize(message)

    return serializer


class PreEncodedResponses(RewritingInterceptor):
    def __init__(self, methods: frozenset[str]) -> None:
        """`methods`: full names, `/package.Service/Method`, of server-streaming methods."""
        super().__init__()
        self._methods = methods

    def rewrite(self, handler: Handler, method: str) -> Handler:
        if method not in self._methods:
            return handler
        if handler.unary_stream is None:
            raise TypeError(f"{method}: only server-streaming methods may pre-encode")
        return grpc.unary_stream_rpc_method_handler(
            handler.unary_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=bytes_or_serialized(handler.response_serializer),
        )
