"""The lab's AWS API endpoint (``AWS_ENDPOINT_URL``).

One HTTP server on 127.0.0.1 that

* answers Route 53 ``ChangeResourceRecordSets`` and ``GetChange`` itself, with AWS's rules
  (:mod:`chaos_dynamo.route53.service`);
* checks ``CreateHealthCheck`` / ``UpdateHealthCheck`` by the lab's rules before passing
  them to the emulator (which stores health checks), tells the lab after every health
  check created, updated or deleted, and answers ``GetHealthCheckStatus`` and
  ``GetHealthCheckLastFailureReason`` from the lab's own checkers (a CALCULATED check gets
  ``InvalidInput``, as AWS documents: its status is at ``/_chaos_dynamo/route53/health``;
  a disabled check reports its checkers' results from before it was disabled);
* passes every other AWS API call (hosted zones, listing records, DynamoDB, STS...) through
  to the emulator unchanged;
* serves the lab's own control API under ``/_chaos_dynamo/`` and Prometheus ``/metrics``.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import re
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

from chaos_dynamo.errors import AwsError, ChaosDynamoError, ConfigError
from chaos_dynamo.route53 import xmlcodec
from chaos_dynamo.route53.service import Route53Service

_RRSET = re.compile(r"^/2013-04-01/hostedzone/([^/]+)/rrset/?$")
_CHANGE = re.compile(r"^/2013-04-01/change/([^/]+)$")
_HEALTH_CHECKS = re.compile(r"^/2013-04-01/healthcheck/?$")
_HEALTH_CHECK = re.compile(r"^/2013-04-01/healthcheck/([^/]+)/?$")
_HEALTH_REPORT = re.compile(r"^/2013-04-01/healthcheck/([^/]+)/(status|lastfailurereason)/?$")
_NOT_FOUND_CODES = frozenset({"NoSuchHostedZone", "NoSuchHealthCheck"})
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade",
}

ControlHandler = Callable[[str, str, dict[str, list[str]], Any], tuple[int, Any]]
"""(method, path, query, json body) -> (status, json-serializable body)."""


class HealthCheckApi(Protocol):
    """What the front needs from the lab's health checks
    (:class:`~chaos_dynamo.route53.service.HealthCheckService`)."""

    def check_create(self, caller_reference: str, config: Mapping[str, Any]) -> object:
        """Raise AwsError (InvalidInput) if the lab refuses this CreateHealthCheck."""

    def check_update(self, check_id: str, update: Mapping[str, Any]) -> dict[str, Any] | None:
        """The merged configuration, None for an unknown id; AwsError if refused."""

    def updated(self, check_id: str, merged: Mapping[str, Any]) -> None:
        """The emulator took an update: evaluate ``merged`` from now on."""

    def refresh(self) -> object:
        """Re-read the emulator's health checks."""

    def reports(self, check_id: str, failures: bool = False) -> list[xmlcodec.Observation] | None:
        """Checker observations (latest results or latest failures); None: unknown id;
        AwsError (InvalidInput) for a check the calls cannot be used for (CALCULATED)."""


class _BadRequest(Exception):
    """The HTTP request itself is malformed."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], front: LabFront) -> None:
        self.front = front
        super().__init__(address, _Handler)


class LabFront:
    """The HTTP server behind ``AWS_ENDPOINT_URL``.

    Args:
        host: loopback address to bind.
        port: 0 for a free port.
        upstream: the emulator's base URL (``http://127.0.0.1:PORT``).
        route53: the service applying Route 53 changes.
        control: handles ``/_chaos_dynamo/...`` requests.
        metrics: returns the Prometheus text for ``/metrics``.
        health: the lab's health checks; without it health-check calls pass through.
    """

    def __init__(
        self,
        host: str,
        port: int,
        upstream: str,
        route53: Route53Service,
        control: ControlHandler,
        metrics: Callable[[], str],
        on_zone_change: Callable[[], None] = lambda: None,
        health: HealthCheckApi | None = None,
    ) -> None:
        self.route53 = route53
        self.health = health
        self.control = control
        self.metrics = metrics
        self.on_zone_change = on_zone_change
        parsed = urlparse(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.upstream_https = parsed.scheme == "https"
        self._server = _Server((host, port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="lab-front", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm on, the body then
    # waits for the client's delayed ACK (40 ms on Linux loopback) on every response.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: the lab logs what matters through its counters."""

    # Every method goes through one dispatcher.
    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            raise _BadRequest("Content-Length is not a non-negative whole number")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload, indent=2, sort_keys=True, default=str).encode(), "application/json")

    def _dispatch(self) -> None:
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            return
        except _BadRequest as exc:
            self.close_connection = True
            self._send_json(400, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - answer, never drop the connection silently
            # A dropped connection would make SDKs retry a non-idempotent change batch.
            self.close_connection = True
            message = f"{type(exc).__name__}: {exc}"
            if self.path.startswith("/2013-04-01/"):
                self._send(500, xmlcodec.error_xml("InternalFailure", message, str(uuid.uuid4()),
                                                   sender=False), "text/xml")
            else:
                self._send_json(500, {"error": message})

    def _route(self) -> None:
        front = self.server.front
        url = urlparse(self.path)
        body = self._body()
        if url.path == "/metrics" and self.command == "GET":
            self._send(200, front.metrics().encode(), "text/plain; version=0.0.4")
            return
        if url.path.startswith("/_chaos_dynamo/"):
            self._control(url.path, parse_qs(url.query), body)
            return
        match = _RRSET.match(url.path)
        if match and self.command == "POST":
            self._change(match.group(1), body)
            return
        match = _CHANGE.match(url.path)
        if match and self.command == "GET" and self._get_change(match.group(1)):
            return
        if front.health is not None and url.path.startswith("/2013-04-01/healthcheck") \
                and self._health_check(front.health, url.path, body):
            return
        status = self._proxy(body)
        if url.path.startswith("/2013-04-01/hostedzone") and self.command in ("POST", "DELETE") \
                and status < 300:
            front.on_zone_change()

    # --- Route 53 ---------------------------------------------------------------------
    def _change(self, zone_id: str, body: bytes) -> None:
        service = self.server.front.route53
        request_id = str(uuid.uuid4())
        try:
            comment, changes = xmlcodec.parse_change_batch(body)
            record = service.change(zone_id, changes, comment)
        except AwsError as exc:
            self._send_aws_error(exc, request_id)
            return
        except ChaosDynamoError as exc:
            self._send(500, xmlcodec.error_xml("InternalFailure", str(exc), request_id, sender=False), "text/xml")
            return
        info = service.describe(record)
        self._send(200, xmlcodec.change_info_xml(
            record.change_id, info["Status"], info["SubmittedAt"], record.comment,
        ), "text/xml")

    def _get_change(self, change_id: str) -> bool:
        service = self.server.front.route53
        record = service.change_status(change_id)
        if record is None:
            return False  # not ours (e.g. CreateHostedZone's change): ask the emulator
        info = service.describe(record)
        self._send(200, xmlcodec.change_info_xml(
            record.change_id, info["Status"], info["SubmittedAt"], record.comment, root="GetChangeResponse",
        ), "text/xml")
        return True

    def _send_aws_error(self, error: AwsError, request_id: str | None = None) -> None:
        status = 404 if error.code in _NOT_FOUND_CODES else 400
        self._send(status, xmlcodec.aws_error_xml(error, request_id or str(uuid.uuid4())), "text/xml")

    def _health_check(self, health: HealthCheckApi, path: str, body: bytes) -> bool:
        """Handle a health-check call the lab takes part in; False: plain pass-through."""
        report = _HEALTH_REPORT.match(path)
        if report and self.command == "GET":
            failures = report.group(2) == "lastfailurereason"
            try:
                observations = health.reports(report.group(1), failures=failures)
            except AwsError as exc:
                self._send_aws_error(exc)
                return True
            if observations is None:
                self._send_aws_error(AwsError("NoSuchHealthCheck", "No health check exists with the "
                                                                   f"specified ID {report.group(1)}"))
                return True
            root = "GetHealthCheckLastFailureReasonResponse" if failures else "GetHealthCheckStatusResponse"
            self._send(200, xmlcodec.health_check_observations_xml(observations, root=root), "text/xml")
            return True
        one = _HEALTH_CHECK.match(path)
        tell_lab: Callable[[], object]
        if _HEALTH_CHECKS.match(path) and self.command == "POST":
            try:
                health.check_create(*xmlcodec.parse_create_health_check(body))
            except AwsError as exc:
                self._send_aws_error(exc)
                return True
            tell_lab = health.refresh
        elif one and self.command == "POST":
            check_id = one.group(1)
            try:
                merged = health.check_update(check_id, xmlcodec.parse_update_health_check(body))
            except AwsError as exc:
                self._send_aws_error(exc)
                return True
            tell_lab = health.refresh if merged is None else functools.partial(health.updated, check_id, merged)
        elif one and self.command == "DELETE":
            tell_lab = health.refresh
        else:
            return False
        self._proxy(body, lambda status: _after_health_check_call(status, tell_lab))
        return True

    # --- lab control --------------------------------------------------------------------
    def _control(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
        try:
            payload = json.loads(body) if body else None
        except json.JSONDecodeError as exc:
            self._send_json(400, {"error": f"body: not JSON ({exc})"})
            return
        try:
            status, result = self.server.front.control(self.command, path, query, payload)
        except ConfigError as exc:
            self._send_json(400, {"error": str(exc), "field": exc.field, "problem": exc.problem, "fix": exc.fix})
            return
        except ChaosDynamoError as exc:
            self._send_json(409, {"error": str(exc)})
            return
        self._send_json(status, result)

    # --- pass-through -------------------------------------------------------------------
    def _proxy(self, body: bytes, before_reply: Callable[[int], object] | None = None) -> int:
        """Forward the request to the emulator and relay its answer; return the status.

        ``before_reply`` runs with the emulator's status before the client gets the answer,
        so what it changes in the lab is in place when the client's call returns.
        """
        front = self.server.front
        conn_type = http.client.HTTPSConnection if front.upstream_https else http.client.HTTPConnection
        conn = conn_type(front.upstream_host, front.upstream_port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            conn.connect()
            # http.client sends headers and body separately: without TCP_NODELAY the body
            # waits for the emulator's delayed ACK, adding ~40 ms to every proxied call.
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except OSError as exc:
            self._send_json(502, {"error": f"emulator at {front.upstream_host}:{front.upstream_port} "
                                           f"unreachable: {exc}"})
            return 502
        finally:
            conn.close()
        if before_reply is not None:
            before_reply(response.status)
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        return response.status


def _after_health_check_call(status: int, tell_lab: Callable[[], object]) -> None:
    """After the emulator took a health-check change and before the caller hears so, the
    lab re-reads the health checks, so the caller's next call (a change batch naming the
    new check) finds them. A failing read is left to the next change (or the resync loop):
    the call itself succeeded."""
    if status < 300:
        with contextlib.suppress(ChaosDynamoError):
            tell_lab()
