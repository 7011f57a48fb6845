"""Responses an LB writes itself instead of forwarding: its own 400/502/504 and the
DynamoDB errors it injects, each in the JSON shape botocore parses (``__type``)."""

from __future__ import annotations

import http.client
import json
import zlib
from dataclasses import replace
from typing import Any

from chaos_dynamo.lbfleet._http import _Response

_DYNAMODB_ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
_DYNAMODB_ERRORS: dict[int, tuple[str, str]] = {
    500: ("InternalServerError", "Internal server error"),
    400: (
        "ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API.",
    ),
}
"""Statuses ``set_error_rate`` can inject, with the DynamoDB error each one stands for."""


def _json_response(status: int, document: dict[str, Any], content_type: str) -> _Response:
    body = json.dumps(document).encode()
    reason = http.client.responses.get(status, "")
    return _Response(status, reason, [("Content-Type", content_type)], body)


def _gateway_error(status: int, lb: str, message: str) -> _Response:
    """A 502/504 the LB itself answers, in the JSON shape botocore parses (``__type``)."""
    kind = "BadGateway" if status == 502 else "GatewayTimeout"
    document = {"__type": f"chaos_dynamo.lb#{kind}", "message": message, "lb": lb}
    return _json_response(status, document, "application/json")


def _dynamodb_error(status: int, lb: str, request_id: str) -> _Response:
    """A DynamoDB-style error response, as botocore expects it (type, message, CRC32)."""
    code, message = _DYNAMODB_ERRORS[status]
    document = {
        "__type": _DYNAMODB_ERROR_PREFIX + code,
        "message": f"{message} (injected by chaos-dynamo LB {lb})",
    }
    response = _json_response(status, document, "application/x-amz-json-1.0")
    extra = [("x-amzn-RequestId", request_id), ("x-amz-crc32", str(zlib.crc32(response.body)))]
    return replace(response, headers=response.headers + extra)


def _wire_bad_request(problem: str) -> bytes:
    body = json.dumps({"__type": "chaos_dynamo.lb#BadRequest", "message": problem}).encode()
    head = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body
