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

ERROR_CODES: dict[str, int] = {
    "ProvisionedThroughputExceededException": 400,
    "ThrottlingException": 400,
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
}
"""DynamoDB errors the LBs can inject, with the HTTP status DynamoDB answers them with.

botocore retries all four: standard and adaptive modes count the two 400s as throttling
(``ThrottledRetryableChecker``; adaptive mode then slows its send rate) and 500/503 as
transient (``TransientRetryableChecker``); legacy mode's ``_retry.json`` has a policy for
each (``throughput_exceeded``, ``throttling_exception``, ``general_server_error``,
``service_unavailable``).
"""

DEFAULT_ERROR_CODES: dict[int, str] = {
    400: "ProvisionedThroughputExceededException",
    500: "InternalServerError",
}
"""The error an ``error_status`` alone stands for (the knob that predates ``error_code``)."""

_MESSAGES = {
    "ProvisionedThroughputExceededException": (
        "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API."
    ),
    "ThrottlingException": "Rate of requests exceeds the allowed throughput.",
    "InternalServerError": "Internal server error",
    "ServiceUnavailable": "The service is currently unavailable or busy.",
}


def _json_response(status: int, document: dict[str, Any], content_type: str) -> _Response:
    body = json.dumps(document).encode()
    reason = http.client.responses.get(status, "")
    return _Response(status, reason, [("Content-Type", content_type)], body)


def _gateway_error(status: int, lb: str, message: str) -> _Response:
    """A 502/504 the LB itself answers, in the JSON shape botocore parses (``__type``)."""
    kind = "BadGateway" if status == 502 else "GatewayTimeout"
    document = {"__type": f"chaos_dynamo.lb#{kind}", "message": message, "lb": lb}
    return _json_response(status, document, "application/json")


def _dynamodb_error(code: str, lb: str, request_id: str) -> _Response:
    """A DynamoDB-style error response, as botocore expects it (type, message, CRC32)."""
    document = {
        "__type": _DYNAMODB_ERROR_PREFIX + code,
        "message": f"{_MESSAGES[code]} (injected by chaos-dynamo LB {lb})",
    }
    response = _json_response(ERROR_CODES[code], document, "application/x-amz-json-1.0")
    extra = [("x-amzn-RequestId", request_id), ("x-amz-crc32", str(zlib.crc32(response.body)))]
    return replace(response, headers=response.headers + extra)


def _wire_bad_request(problem: str) -> bytes:
    body = json.dumps({"__type": "chaos_dynamo.lb#BadRequest", "message": problem}).encode()
    head = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body
