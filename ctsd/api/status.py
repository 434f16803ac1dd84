"""Domain errors become gRPC status codes here, and only here.

Every servicer is wrapped by `ErrorTranslationInterceptor`: a `CtsError`
leaves as its canonical code with `google.rpc` details (BadRequest naming
each bad field, ErrorInfo with a machine-readable reason). Any other
exception is a bug: it is logged with a request id and answered INTERNAL
without its text, which might hold data the client must not see.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ctsd import errors

log = logging.getLogger("ctsd.api")

ERROR_DOMAIN = "ctsd.cts.v1"
MAX_MESSAGE_CHARS = 1000

_CODES: tuple[tuple[type[errors.CtsError], int], ...] = (  # first match wins
    (errors.InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (errors.NotFound, code_pb2.NOT_FOUND),
    (errors.AlreadyExists, code_pb2.ALREADY_EXISTS),
    (errors.FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (errors.EtagMismatch, code_pb2.ABORTED),
    (errors.ResourceExhausted, code_pb2.RESOURCE_EXHAUSTED),
    (errors.Unavailable, code_pb2.UNAVAILABLE),
    (errors.ConfigurationError, code_pb2.FAILED_PRECONDITION),
)


def code_for(error: errors.CtsError) -> int:
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    return int(code_pb2.FAILED_PRECONDITION)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: errors.CtsError) -> grpc.Status:
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))]
    if isinstance(error, errors.InvalidArgument) and error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        details.insert(0, _pack(bad))
    status = status_pb2.Status(
        code=code_for(error), message=error.message[:MAX_MESSAGE_CHARS], details=details
    )
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


async def _abort_for(
    exc: Exception, context: grpc.aio.ServicerContext[Any, Any], method: str
) -> None:
    if isinstance(exc, errors.CtsError):
        await context.abort_with_status(to_status(exc))
    request_id = uuid.uuid4().hex[:12]
    log.error("unhandled error in %s (request %s)", method, request_id, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (request {request_id})")


Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any] | None"
Unary = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
Streaming = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]


def _guard_unary(behavior: Unary, method: str) -> Unary:
    async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort_for(exc, context, method)

    return guarded


def _guard_stream(behavior: Streaming, method: str) -> Streaming:
    async def guarded(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            result = behavior(request, context)
            if inspect.isawaitable(result):  # writes with context.write() (health Watch)
                await result
                return
            async for item in result:
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort_for(exc, context, method)

    return guarded


class ErrorTranslationInterceptor(grpc.aio.ServerInterceptor):
    """Wraps unary and server-streaming handlers once per method, then reuses them."""

    def __init__(self) -> None:
        self._cache: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        method: str = handler_call_details.method
        if method in self._cache:
            return self._cache[method]
        handler = await continuation(handler_call_details)
        wrapped = _wrap(handler, method)
        if wrapped is not None:  # unknown names come from clients: never cache those
            self._cache[method] = wrapped
        return wrapped


def _wrap(handler: Handler, method: str) -> Handler:
    if handler is None:
        return None
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _guard_unary(handler.unary_unary, method),  # type: ignore[arg-type]
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _guard_stream(handler.unary_stream, method),  # type: ignore[arg-type]
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler
