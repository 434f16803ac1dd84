"""Small helpers for calling the daemon and reading rich errors in tests."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from cts.v1 import connection_pb2 as pb

SECRET = "s3cr3t-SHOULD-NEVER-LEAK-7f1e"
PASSPHRASE = "pass-phrase-NEVER-LEAK-42"
API_KEY = "AKIAPUBLICKEY00001234"


def binance_spot(display_name: str = "Main Binance", **over: Any) -> pb.Connection:
    fields: dict[str, Any] = dict(
        display_name=display_name,
        exchange="binance",
        api_type=pb.API_TYPE_SPOT,
        credentials=pb.Credentials(api_key=API_KEY, api_secret=SECRET),
    )
    fields.update(over)
    return pb.Connection(**fields)


KRAKEN_SECRET = base64.b64encode(SECRET.encode()).decode()
"""Kraken hands out secrets in base64; the daemon refuses one that does not decode."""


def kraken_spot(**over: Any) -> pb.Connection:
    fields: dict[str, Any] = dict(
        exchange="kraken", credentials=pb.Credentials(api_key=API_KEY, api_secret=KRAKEN_SECRET))
    fields.update(over)
    return binance_spot(**fields)


def call_code(call: Callable[[], Any]) -> grpc.StatusCode:
    """The status code a call ends with, OK included."""
    try:
        call()
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    try:
        call()
    except grpc.RpcError as exc:
        return exc
    raise AssertionError("the call succeeded but an error was expected")


T = TypeVar("T", bound=Message)


def _details(err: grpc.RpcError, kind: type[T]) -> list[T]:
    """The `google.rpc` details of type `kind` in the error's status."""
    status = rpc_status.from_call(err)
    assert status is not None, "no google.rpc.Status in trailers"
    found = []
    for detail in status.details:
        if detail.Is(kind.DESCRIPTOR):
            message = kind()
            detail.Unpack(message)
            found.append(message)
    return found


def violations(err: grpc.RpcError) -> dict[str, str]:
    """field -> description from the google.rpc.BadRequest detail."""
    return {v.field: v.description for bad in _details(err, error_details_pb2.BadRequest)
            for v in bad.field_violations}


def precondition_violations(err: grpc.RpcError) -> dict[str, str]:
    """field -> description from the google.rpc.PreconditionFailure detail."""
    return {v.subject: v.description
            for failure in _details(err, error_details_pb2.PreconditionFailure)
            for v in failure.violations}


def error_reason(err: grpc.RpcError) -> str:
    return next((str(info.reason) for info in _details(err, error_details_pb2.ErrorInfo)), "")

