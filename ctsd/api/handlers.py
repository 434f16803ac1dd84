"""Wrapping a gRPC method handler of any of the four kinds with one `around` hook.

Interceptors that must see every call (authentication, the access log) use
this instead of handling unary and streaming calls each in their own way. A
stream behaviour may be an async generator or a coroutine that calls
`context.write()` (grpc_health's Watch does); both are accepted.
"""

from __future__ import annotations

import abc
import contextvars
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeAlias

import grpc

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
refused_quietly: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "refused_quietly", default=False)
"""Set by a guard that refused the call and logs refusals itself at a bounded rate: the
access log then keeps its line at debug, so a flood of refusals is no flood of lines."""
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
# `around(method, context)` is entered before the behaviour runs and exited after
# its last message; raising inside it (e.g. context.abort) stops the call.
Around = Callable[[str, Context], AbstractAsyncContextManager[None]]


def _unary(behavior: Callable[..., Awaitable[Any]], method: str, around: Around) -> Any:
    async def wrapped(request: Any, context: Context) -> Any:
        async with around(method, context):
            return await behavior(request, context)

    return wrapped


def _stream(behavior: Callable[..., Any], method: str, around: Around) -> Any:
    async def wrapped(request: Any, context: Context) -> AsyncIterator[Any]:
        async with around(method, context):
            result = behavior(request, context)
            if inspect.isawaitable(result):
                await result  # writes its messages with context.write()
                return
            async for item in result:
                yield item

    return wrapped


def wrap_handler(handler: Handler, method: str, around: Around) -> Handler:
    """The same handler kind and (de)serializers, with `around` on every call."""
    args = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _unary(handler.unary_unary, method, around), **args
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _stream(handler.unary_stream, method, around), **args
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _unary(handler.stream_unary, method, around), **args
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _stream(handler.stream_stream, method, around), **args
        )
    return handler


class RewritingInterceptor(grpc.aio.ServerInterceptor):
    """Rewrites each known method's handler once (`rewrite`) and reuses the result.

    Unknown method names come from clients and are never cached or rewritten:
    grpc answers UNIMPLEMENTED for them, and they cannot grow our memory.
    """

    def __init__(self) -> None:
        self._cache: dict[str, Handler] = {}

    @abc.abstractmethod
    def rewrite(self, handler: Handler, method: str) -> Handler:
        """The handler to serve `method` with from now on."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method: str = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        self._cache[method] = rewritten = self.rewrite(handler, method)
        return rewritten


class WrappingInterceptor(RewritingInterceptor):
    """Applies `around` to every known method but those `skip` names."""

    def __init__(self, around: Around, skip: Callable[[str], bool] = lambda _m: False) -> None:
        super().__init__()
        self._around = around
        self._skip = skip

    def rewrite(self, handler: Handler, method: str) -> Handler:
        return handler if self._skip(method) else wrap_handler(handler, method, self._around)
