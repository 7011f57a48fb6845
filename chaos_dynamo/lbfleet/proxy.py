"""The lab's load balancers: one HTTP/1.1 reverse proxy per LB, in front of the emulator.

In us-east-1 the DynamoDB endpoint name resolves to load balancers, not to DynamoDB itself;
the lab DNS does the same with these proxies, each on its own loopback address and all on
one port (so an address from DNS plus the endpoint's port always reaches an LB). They are
where retry storms become numbers, and where an LB can be made down, slow or failing.

Like a real LB, a proxy keeps client connections alive (HTTP/1.1) and retires one older
than ``max_connection_age`` with ``Connection: close`` on its next response. Upstream it
opens one connection per request, because moto closes its side after every response.

What is counted, and what cannot be
    Every request read in full is counted once, by client host, by DynamoDB operation (from
    ``X-Amz-Target``; ``"unknown"`` when absent), by status, and in a bounded request log;
    the cumulative counters never lose a request, the log forgets the oldest records past
    ``log_limit``. A request is counted *before* its response is written, so a client that
    has its answer always finds it counted. Status ``0`` means the LB read the request but
    went down (or stopped) before answering. ``GET /_lb/health`` is counted apart
    (``health_checks``), never as DynamoDB traffic. A connection attempt made while the LB
    is down is refused by the kernel (there is no listening socket), so no code here ever
    sees it and it cannot be counted: measure it at the client (botocore's
    ``EndpointConnectionError``) or through the DNS query log.

Threads
    Each listening socket has one accept thread; each client connection has one thread. A
    fault knob takes effect for the next request (latency, errors, health) or immediately
    (down: the listener and every open client connection are closed before it returns).
"""

from __future__ import annotations

import errno
import http.client
import io
import ipaddress
import itertools
import json
import math
import random
import selectors
import socket
import threading
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.errors import ConfigError, LabError

__all__ = ["HEALTH_PATH", "LBFleet", "LoadBalancer", "RequestRecord"]

HEALTH_PATH = "/_lb/health"
"""GET this path on any LB for its health; answered by the LB itself, never forwarded."""

_IDLE_TIMEOUT_S = 350.0  # NLB's idle timeout: an idle client connection is dropped after this.
_JOIN_TIMEOUT_S = 5.0  # how long stop() waits for each connection thread to finish.
_PORT_ATTEMPTS = 20  # LBFleet: how many shared ports to try before giving up.
_LISTEN_BACKLOG = 512  # a retry storm opens many connections at once; do not drop SYNs.
_MAX_LINE = 65536  # bytes in a request line or header field
_MAX_HEADERS = 200

# Headers that describe one hop, not the message (RFC 9110 7.6.1), plus the framing headers
# this proxy rewrites itself.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)

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


# --------------------------------------------------------------------------- validation


def _loopback_address(field: str, value: object) -> str:
    """Return ``value`` as a 127.x.x.x address, or raise naming ``field``: the lab never
    binds or sends beyond loopback."""
    try:
        address = ipaddress.IPv4Address(str(value))
    except ValueError:
        raise ConfigError(
            field, f"{value!r} is not an IPv4 address", "use a loopback address such as 127.0.0.11"
        ) from None
    if not address.is_loopback:
        raise ConfigError(
            field,
            f"{value} is not a 127.x.x.x address",
            "the lab only binds and sends on loopback; use 127.0.0.11 and up",
        )
    return str(address)


def _port_number(field: str, value: object) -> int:
    """Return ``value`` as a TCP port (0 = any free port), or raise naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(field, f"{value!r} is not a port number", "use 0..65535 (0 = any free)")
    return value


def _seconds(field: str, value: object, *, positive: bool = False, unit: str = "seconds") -> float:
    """Return ``value`` as a finite number (>= 0, or > 0 when ``positive``), or raise naming
    ``field``: a NaN or negative knob would silently mean "no fault"."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(field, f"{value!r} is not a finite number", f"pass {unit} as a number")
    if value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(field, f"{value!r} is out of range", f"pass {unit} {bound}")
    return float(value)


def _upstream_url(value: str) -> tuple[str, int]:
    """Return (host, port) of an ``http://127.x.x.x:PORT`` emulator URL."""
    parts = urlsplit(value)
    if parts.scheme != "http" or parts.hostname is None:
        raise ConfigError(
            "upstream", f"{value!r} is not an http:// URL", "pass e.g. http://127.0.0.1:5000"
        )
    host = _loopback_address("upstream", parts.hostname)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not port:
        raise ConfigError("upstream", f"{value!r} has no port", "pass e.g. http://127.0.0.1:5000")
    return host, port


def _operation(target: str) -> str:
    """``DynamoDB_20120810.GetItem`` -> ``GetItem``; no target -> ``unknown``."""
    operation = target.rpartition(".")[2].strip()
    return operation or "unknown"


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class RequestRecord:
    """One request an LB read in full (health checks excluded).

    Attributes:
        time: wall-clock seconds (the LB's clock ``now``) when the request had been read.
        lb: name of the LB that answered.
        client: the client's IP address; client_port its source port (one per connection).
        operation: the DynamoDB operation from ``X-Amz-Target``, or ``"unknown"``.
        status: the HTTP status the LB answered; 0 when it went down before answering.
        latency: seconds from reading the request to having the response ready (the LB's
            clock ``monotonic``): injected latency plus the upstream's time.
        user_agent: the ``User-Agent`` header, kept whole: the SDK app id in it
            (``app/<id>``) is how a request is attributed to a service.
    """

    time: float
    lb: str
    client: str
    client_port: int
    operation: str
    status: int
    latency: float
    user_agent: str


@dataclass(frozen=True)
class _Request:
    """An HTTP request as read from a client, body included."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    client: str
    client_port: int
    close_requested: bool
    http10: bool

    def header(self, name: str) -> str:
        """The first value of header ``name`` (case-insensitive), or ``""``."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), "")


@dataclass(frozen=True)
class _Response:
    """An HTTP response ready to be written; ``close`` ends the client connection after it."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    close: bool = False


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


def _wire(request: _Request, response: _Response) -> bytes:
    """Serialize ``response`` for the client in one buffer (one send: no Nagle stall)."""
    headers = [(k, v) for k, v in response.headers if k.lower() not in _HOP_BY_HOP]
    bodyless = request.method == "HEAD" or response.status in (204, 304) or response.status < 200
    if request.method == "HEAD":
        headers += [(k, v) for k, v in response.headers if k.lower() == "content-length"]
    elif not bodyless:
        headers.append(("Content-Length", str(len(response.body))))
    if response.close:
        headers.append(("Connection", "close"))
    elif request.http10:
        headers.append(("Connection", "keep-alive"))
    lines = [f"HTTP/1.1 {response.status} {response.reason}"]
    lines += [f"{name}: {value}" for name, value in headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if bodyless else head + response.body


def _upstream_request(request: _Request) -> bytes:
    """The request to send upstream: same method, path, Host and body; X-Forwarded-For added."""
    headers = [(k, v) for k, v in request.headers if k.lower() not in _HOP_BY_HOP]
    forwarded = request.header("X-Forwarded-For")
    headers = [(k, v) for k, v in headers if k.lower() != "x-forwarded-for"]
    chain = f"{forwarded}, {request.client}" if forwarded else request.client
    headers.append(("X-Forwarded-For", chain))
    if request.body or request.method in ("POST", "PUT", "PATCH"):
        headers.append(("Content-Length", str(len(request.body))))
    headers.append(("Connection", "close"))
    lines = [f"{request.method} {request.path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body


class _BadMessage(ValueError):
    """A malformed HTTP message (from a client: 400; from the upstream: 502)."""


@dataclass(frozen=True)
class _Head:
    """The first line and header fields of an HTTP message, in order, duplicates kept."""

    line: str
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), "")

    def tokens(self, name: str) -> set[str]:
        """The comma-separated tokens of every ``name`` field, lower case."""
        wanted = name.lower()
        fields = (value for key, value in self.headers if key.lower() == wanted)
        return {token.strip().lower() for value in fields for token in value.split(",")}


def _read_head(rfile: io.BufferedIOBase) -> _Head | None:
    """Read a start line and header fields; None on a clean end of stream before any byte.

    Hand-rolled rather than ``http.client.parse_headers``: the email parser behind that
    costs about 100 us a message, twice per proxied request, a real share of the <= 15%
    the LB may add to a ~7 ms moto call.
    """
    line = rfile.readline(_MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):  # RFC 9112 2.2: ignore empty lines before a request
        line = rfile.readline(_MAX_LINE + 1)
    if not line:
        return None
    headers: list[tuple[str, str]] = []
    for _ in range(_MAX_HEADERS):
        raw = rfile.readline(_MAX_LINE + 1)
        if raw in (b"\r\n", b"\n", b""):
            return _Head(_line_text(line), headers)
        name, colon, value = _line_text(raw).partition(":")
        if not colon or not name or name != name.strip():
            raise _BadMessage(f"malformed header line {raw[:80]!r}")
        headers.append((name, value.strip()))
    raise _BadMessage(f"more than {_MAX_HEADERS} header fields")


def _line_text(line: bytes) -> str:
    if len(line) > _MAX_LINE or not line.endswith(b"\n"):
        raise _BadMessage("line too long or cut short")
    return line.decode("latin-1").rstrip("\r\n")


def _read_body(rfile: io.BufferedIOBase, head: _Head, *, until_eof: bool) -> bytes:
    """Read the body framed by ``head``: chunked, Content-Length, or (``until_eof``, for a
    response without either) everything up to the end of the stream."""
    if "chunked" in head.tokens("Transfer-Encoding"):
        return _read_chunked(rfile)
    length_text = head.get("Content-Length")
    if length_text:
        if not length_text.isdigit():
            raise _BadMessage(f"bad Content-Length {length_text!r}")
        return _read_exactly(rfile, int(length_text))
    return rfile.read() if until_eof else b""


def _read_exactly(rfile: io.BufferedIOBase, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) < size:
        raise _BadMessage(f"body cut short: {len(data)} of {size} bytes")
    return data


def _read_chunked(rfile: io.BufferedIOBase) -> bytes:
    """Read a chunked body and skip its trailer fields."""
    parts: list[bytes] = []
    while True:
        size_text = _line_text(rfile.readline(_MAX_LINE + 1)).split(";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadMessage(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            break
        parts.append(_read_exactly(rfile, size))
        rfile.readline(_MAX_LINE + 1)
    while rfile.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
        pass
    return b"".join(parts)


def _read_request(
    rfile: io.BufferedIOBase, conn: _ClientConnection, on_continue: Callable[[], None]
) -> _Request | None:
    """Read the next request on a client connection; None when the client hung up."""
    head = _read_head(rfile)
    if head is None:
        return None
    method, target, version = _request_line(head.line)
    connection = head.tokens("Connection")
    if version == "HTTP/1.0":
        close = "keep-alive" not in connection
    else:
        close = "close" in connection
    if "100-continue" in head.tokens("Expect"):
        on_continue()
    body = _read_body(rfile, head, until_eof=False)
    return _Request(
        method, target, head.headers, body, conn.host, conn.port, close, version == "HTTP/1.0"
    )


def _request_line(line: str) -> tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not parts[0].isalpha():
        raise _BadMessage(f"unsupported request line {line[:80]!r}")
    method, target, version = parts
    return method, target, version


def _read_response(rfile: io.BufferedIOBase, method: str) -> _Response:
    """Read the upstream's response (skipping 1xx interim ones)."""
    while True:
        head = _read_head(rfile)
        if head is None:
            raise _BadMessage("the upstream closed the connection without answering")
        status, reason = _status_line(head.line)
        if not 100 <= status < 200:
            break
    if method == "HEAD" or status in (204, 304):
        body = b""
    else:
        body = _read_body(rfile, head, until_eof=True)
    return _Response(status, reason, head.headers, body)


def _status_line(line: str) -> tuple[int, str]:
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise _BadMessage(f"bad status line {line[:80]!r}")
    return int(code), reason


def _wire_bad_request(problem: str) -> bytes:
    body = json.dumps({"__type": "chaos_dynamo.lb#BadRequest", "message": problem}).encode()
    head = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def _shutdown_quietly(sock: socket.socket) -> None:
    """Shut both directions so a thread blocked on ``sock`` wakes up; it may be closed already."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _sum_counts(documents: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Add counter documents key by key (nested dicts recursively)."""
    total: dict[str, Any] = {}
    for document in documents:
        for key, value in document.items():
            if isinstance(value, dict):
                total[key] = _sum_counts([total.get(key, {}), value])
            else:
                total[key] = total.get(key, 0) + value
    return total


# --------------------------------------------------------------------------- state


class _Traffic:
    """Cumulative counters and the bounded request log, under one lock.

    They change together, so a reader never sees a request in one and not the other; the
    log may forget old records, the counters never do.
    """

    _EVENTS = (
        "connections_accepted",
        "connections_aged_out",
        "upstream_errors",
        "injected_errors",
        "dropped",
        "health_checks",
        "bad_requests",
    )

    def __init__(self, log_limit: int) -> None:
        self._lock = threading.Lock()
        self._log: deque[RequestRecord] = deque(maxlen=log_limit)
        self._requests = 0
        self._by_client: Counter[str] = Counter()
        self._by_operation: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._events: Counter[str] = Counter(dict.fromkeys(self._EVENTS, 0))

    def add_request(self, record: RequestRecord, event: str | None = None) -> None:
        """Count one request (and, optionally, one event such as ``upstream_errors``)."""
        with self._lock:
            self._requests += 1
            self._by_client[record.client] += 1
            self._by_operation[record.operation] += 1
            self._by_status[str(record.status)] += 1
            if event is not None:
                self._events[event] += 1
            self._log.append(record)

    def add_event(self, event: str) -> None:
        with self._lock:
            self._events[event] += 1

    def snapshot(self) -> dict[str, Any]:
        """All counters as plain JSON-serializable dicts."""
        with self._lock:
            return {
                "requests": self._requests,
                "by_client": dict(self._by_client),
                "by_operation": dict(self._by_operation),
                "by_status": dict(self._by_status),
                **dict(self._events),
            }

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)


def _select_records(
    records: list[RequestRecord], since: float | None, client: str | None, operation: str | None
) -> list[RequestRecord]:
    """Records at or after ``since`` from ``client`` for ``operation`` (None = any), by time."""
    chosen = [
        r
        for r in records
        if (since is None or r.time >= since)
        and (client is None or r.client == client)
        and (operation is None or r.operation == operation)
    ]
    return sorted(chosen, key=lambda r: r.time)


class _Faults:
    """The per-request fault knobs (latency, injected errors, health), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._latency = 0.0
            self._unhealthy = False
            self._error_rate = 0.0
            self._error_status = 500
            self._error_seed = 0
            self._rng = random.Random(0)

    def set_latency(self, seconds: float) -> None:
        with self._lock:
            self._latency = seconds

    def set_unhealthy(self, unhealthy: bool) -> None:
        with self._lock:
            self._unhealthy = unhealthy

    def set_error_rate(self, rate: float, status: int, seed: int) -> None:
        with self._lock:
            self._error_rate, self._error_status, self._error_seed = rate, status, seed
            self._rng = random.Random(seed)

    def latency(self) -> float:
        with self._lock:
            return self._latency

    def unhealthy(self) -> bool:
        with self._lock:
            return self._unhealthy

    def draw_error(self) -> tuple[int, int] | None:
        """(status, sequence number) of an error to inject into this request, or None.

        The seeded generator is drawn once per DynamoDB request, in arrival order, so a
        sequential client sees the same statuses every run.
        """
        with self._lock:
            if self._error_rate <= 0 or self._rng.random() >= self._error_rate:
                return None
            return self._error_status, next(self._ids)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "latency": self._latency,
                "unhealthy": self._unhealthy,
                "error_rate": self._error_rate,
                "error_status": self._error_status,
                "error_seed": self._error_seed,
            }


class _ClientConnection:
    """One accepted client connection, and the means to cut it from another thread."""

    def __init__(self, sock: socket.socket, host: str, port: int, accepted_at: float) -> None:
        self.sock = sock
        self.host = host
        self.port = port
        self.accepted_at = accepted_at
        self.killed = threading.Event()
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._upstream: socket.socket | None = None

    def kill(self) -> None:
        """Cut the connection (and its upstream request, if any) now; its thread then ends."""
        with self._lock:
            self.killed.set()
            _shutdown_quietly(self.sock)
            if self._upstream is not None:
                _shutdown_quietly(self._upstream)

    def attach_upstream(self, sock: socket.socket) -> bool:
        """Make ``sock`` cut along with this connection; False if it is already cut."""
        with self._lock:
            if self.killed.is_set():
                return False
            self._upstream = sock
            return True

    def detach_upstream(self) -> None:
        with self._lock:
            self._upstream = None


class _Listener:
    """A listening socket plus the thread that accepts on it, closable from any thread.

    ``close`` wakes the accept thread through a socket pair and lets *it* close the
    listening socket: closing a socket another thread is selecting on is not safe.
    """

    def __init__(
        self,
        address: str,
        port: int,
        on_accept: Callable[[socket.socket, tuple[str, int]], None],
        name: str,
    ) -> None:
        self._sock = _bind_listener(address, port)
        self.port: int = self._sock.getsockname()[1]
        self._on_accept = on_accept
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name=f"lb-{name}-accept", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting and close the listening socket; returns once it is closed."""
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._thread.join()
        self._wake_w.close()

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            try:
                while True:
                    for key, _ in selector.select():
                        if key.fileobj is self._wake_r:
                            return
                        self._accept_one()
            finally:
                self._sock.close()
                self._wake_r.close()

    def _accept_one(self) -> None:
        try:
            client, peer = self._sock.accept()
        except OSError:  # the client gave up between select and accept, or no fds left
            return
        self._on_accept(client, peer)


def _bind_listener(address: str, port: int) -> socket.socket:
    """A non-blocking listening socket on address:port.

    SO_REUSEADDR lets an LB that was taken down listen again on the same port while its
    old connections sit in TIME_WAIT; on Linux it never lets two sockets listen at once.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(_LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class _Refusal:
    """A ``refuse_for`` window: the wall-time timer thread and its bookkeeping deadline."""

    until: float
    cancelled: threading.Event
    thread: threading.Thread | None = None


# --------------------------------------------------------------------------- LB


class LoadBalancer:
    """One load balancer: an HTTP/1.1 reverse proxy on ``address:port`` to ``upstream``.

    Args:
        name: shown in counters, records and the health answer.
        address: a 127.x.x.x address to listen on (anything else is refused).
        port: TCP port; 0 picks a free one at ``start``.
        upstream: the emulator, ``http://127.x.x.x:PORT``.
        max_connection_age: seconds after which a client connection is closed, on its next
            response (``Connection: close``), as real LBs retire long-lived connections.
        clock: timestamps records and ages connections; fault timing uses real time.
        log_limit: how many request records to keep (counters are never bounded).
        upstream_timeout: seconds to wait for the upstream before answering 504.
    """

    def __init__(
        self,
        name: str,
        address: str,
        port: int,
        upstream: str,
        *,
        max_connection_age: float = 60.0,
        clock: Clock = REAL_CLOCK,
        log_limit: int = 200_000,
        upstream_timeout: float = 30.0,
    ) -> None:
        if not name:
            raise ConfigError("name", "an LB needs a non-empty name", "pass e.g. 'lb-a'")
        if isinstance(log_limit, bool) or not isinstance(log_limit, int) or log_limit < 1:
            raise ConfigError("log_limit", f"{log_limit!r} is not a positive integer")
        self.name = name
        self._address = _loopback_address("address", address)
        self._port = _port_number("port", port)
        self._upstream = _upstream_url(upstream)
        self._upstream_url = upstream
        self._max_age = _seconds("max_connection_age", max_connection_age, positive=True)
        self._upstream_timeout = _seconds("upstream_timeout", upstream_timeout, positive=True)
        self._clock = clock
        self._traffic = _Traffic(log_limit)
        self._faults = _Faults()
        self._state_lock = threading.Lock()  # running/down/listener/refusal change together
        self._running = False
        self._down = False
        self._listener: _Listener | None = None
        self._refusal: _Refusal | None = None
        self._conns_lock = threading.Lock()
        self._conns: set[_ClientConnection] = set()

    # ----------------------------------------------------------------- lifecycle

    @property
    def address(self) -> str:
        return self._address

    @property
    def port(self) -> int:
        """The listening port (the requested one until the first ``start``)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://address:port``: an ``endpoint_url`` that reaches this LB directly."""
        return f"http://{self._address}:{self._port}"

    def start(self) -> None:
        """Listen and serve; an LB that was set down comes up (other knobs are kept).

        Raises:
            LabError: already running, or address:port cannot be bound.
        """
        try:
            self._start(self._port)
        except OSError as error:
            raise LabError(
                f"LB {self.name} could not listen on {self._address}:{self._port}: {error}; "
                "free the port or pass port=0"
            ) from error

    def _start(self, port: int) -> None:
        """Start on ``port`` (0 = any); OSError when it cannot be bound (LBFleet retries)."""
        with self._state_lock:
            if self._running:
                raise LabError(f"LB {self.name} is already running on {self.url}")
            self._listener = _Listener(self._address, port, self._accept, self.name)
            self._port = self._listener.port
            self._running, self._down = True, False

    def stop(self) -> None:
        """Close the listener and every client connection, and wait for their threads."""
        with self._state_lock:
            if not self._running:
                return
            self._running = False
            refusal = self._cancel_refusal_locked()
            self._close_listener_locked()
        for conn in self._kill_connections():
            if conn.thread is not None:
                conn.thread.join(_JOIN_TIMEOUT_S)
        if refusal is not None and refusal.thread is not None:
            refusal.thread.join(_JOIN_TIMEOUT_S)

    def __enter__(self) -> LoadBalancer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LoadBalancer({self.name!r}, {self.url!r} -> {self._upstream_url!r})"

    # ----------------------------------------------------------------- fault knobs

    def set_down(self, down: bool) -> None:
        """Down: connections are refused (no listener) and open ones are closed now.

        Up: listen again on the same address:port. Cancels a pending ``refuse_for``.
        """
        with self._state_lock:
            self._cancel_refusal_locked()
            self._apply_down_locked(bool(down))

    def refuse_for(self, seconds: float) -> None:
        """Go down now and come back up on its own after ``seconds`` of real time.

        The wait is a timer (an Event wait, cancelled by ``set_down``/``reset_faults``/
        ``stop``); the LB's clock only dates the window for ``faults()``.
        """
        seconds = _seconds("seconds", seconds)
        with self._state_lock:
            self._cancel_refusal_locked()
            self._apply_down_locked(True)
            refusal = _Refusal(self._clock.monotonic() + seconds, threading.Event())
            refusal.thread = threading.Thread(
                target=self._end_refusal_after,
                args=(refusal, seconds),
                name=f"lb-{self.name}-refusal",
                daemon=True,
            )
            self._refusal = refusal
            refusal.thread.start()

    def set_latency(self, seconds: float) -> None:
        """Wait ``seconds`` (real time) before answering each DynamoDB request."""
        self._faults.set_latency(_seconds("seconds", seconds))

    def set_unhealthy(self, unhealthy: bool) -> None:
        """Make ``GET /_lb/health`` answer 503 (traffic is still served, as on a real LB)."""
        self._faults.set_unhealthy(bool(unhealthy))

    def set_error_rate(self, rate: float, status: int = 500, seed: int = 0) -> None:
        """Answer a fraction ``rate`` of DynamoDB requests with an error instead of forwarding.

        Args:
            rate: 0.0 (off) .. 1.0 (every request).
            status: 500 -> ``InternalServerError``; 400 ->
                ``ProvisionedThroughputExceededException`` (throttling).
            seed: seeds the random.Random that picks the failing requests, so a run replays.
        """
        rate = _seconds("rate", rate, unit="a fraction")
        if rate > 1:
            raise ConfigError("rate", f"{rate!r} is above 1.0", "pass a fraction 0.0..1.0")
        if status not in _DYNAMODB_ERRORS:
            raise ConfigError(
                "status", f"{status!r} is not injectable", f"pass one of {sorted(_DYNAMODB_ERRORS)}"
            )
        self._faults.set_error_rate(rate, status, int(seed))

    def reset_faults(self) -> None:
        """Up, healthy, no latency, no injected errors."""
        self._faults.reset()
        self.set_down(False)

    def faults(self) -> dict[str, Any]:
        """The current knobs; ``refusing_for`` is the seconds left of ``refuse_for``, if any."""
        with self._state_lock:
            down = self._down
            refusal = self._refusal
        left = None if refusal is None else max(0.0, refusal.until - self._clock.monotonic())
        return {"down": down, "refusing_for": left, **self._faults.describe()}

    def _apply_down_locked(self, down: bool) -> None:
        self._down = down
        if not self._running:
            return
        if down:
            self._close_listener_locked()
            self._kill_connections()
        elif self._listener is None:
            try:
                self._listener = _Listener(self._address, self._port, self._accept, self.name)
            except OSError as error:
                self._down = True
                raise LabError(
                    f"LB {self.name} cannot listen again on {self.url}: {error}; "
                    "something else took the port while the LB was down"
                ) from error

    def _close_listener_locked(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _cancel_refusal_locked(self) -> _Refusal | None:
        refusal, self._refusal = self._refusal, None
        if refusal is not None:
            refusal.cancelled.set()
        return refusal

    def _end_refusal_after(self, refusal: _Refusal, seconds: float) -> None:
        if refusal.cancelled.wait(seconds):
            return
        with self._state_lock:
            if self._refusal is not refusal:
                return
            self._refusal = None
            self._apply_down_locked(False)

    # ----------------------------------------------------------------- traffic

    def counters(self) -> dict[str, Any]:
        """Cumulative counters, JSON-serializable, never reset and never bounded.

        ``requests``, ``by_client``, ``by_operation`` and ``by_status`` count DynamoDB
        requests (injected errors included, health checks not). Events:
        ``upstream_errors`` (the LB's own 502/504), ``injected_errors``, ``dropped``
        (status 0), ``connections_accepted``, ``connections_aged_out``, ``health_checks``
        and ``bad_requests`` (unparsable HTTP). Refused connections cannot be counted: see
        the module docstring.
        """
        return self._traffic.snapshot()

    def request_log(
        self, since: float | None = None, client: str | None = None, operation: str | None = None
    ) -> list[RequestRecord]:
        """Kept records at or after ``since`` (clock ``now``), filtered, in time order."""
        return _select_records(self._traffic.records(), since, client, operation)

    def _accept(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        """Called by the accept thread: register the connection and give it a thread."""
        conn = _ClientConnection(sock, peer[0], peer[1], self._clock.monotonic())
        self._traffic.add_event("connections_accepted")
        conn.thread = threading.Thread(
            target=self._serve_connection, args=(conn,), name=f"lb-{self.name}-conn", daemon=True
        )
        with self._conns_lock:
            self._conns.add(conn)
        try:
            conn.thread.start()
        except RuntimeError:  # no more threads: shed the connection rather than the LB
            self._forget(conn)

    def _serve_connection(self, conn: _ClientConnection) -> None:
        """The connection's thread: answer requests until either side closes it."""
        sock = conn.sock
        try:
            sock.settimeout(_IDLE_TIMEOUT_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with sock.makefile("rb") as rfile:
                self._converse(conn, rfile)
        except _BadMessage as error:
            self._traffic.add_event("bad_requests")
            _send_quietly(sock, _wire_bad_request(str(error)))
        except OSError:
            pass  # the client went away, idled out, or the LB cut the connection
        finally:
            self._forget(conn)

    def _converse(self, conn: _ClientConnection, rfile: io.BufferedIOBase) -> None:
        def send_continue() -> None:
            conn.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        while True:
            request = _read_request(rfile, conn, send_continue)
            if request is None:
                return
            response = self._answer(request, conn)
            if response is None:
                return
            conn.sock.sendall(_wire(request, response))
            if response.close:
                return

    def _forget(self, conn: _ClientConnection) -> None:
        # Unregister under the lock that kill() runs under, then close: kill never
        # touches a closed (possibly reused) descriptor.
        with self._conns_lock:
            self._conns.discard(conn)
        conn.sock.close()

    def _kill_connections(self) -> list[_ClientConnection]:
        with self._conns_lock:
            conns = list(self._conns)
            for conn in conns:
                conn.kill()
        return conns

    def _answer(self, request: _Request, conn: _ClientConnection) -> _Response | None:
        """The response to one request, counted before it is sent; None if the LB cut it.

        Health checks are answered here; DynamoDB traffic gets the fault knobs, then the
        upstream. The response says whether the connection closes after it.
        """
        if request.method == "GET" and request.path.split("?", 1)[0] == HEALTH_PATH:
            self._traffic.add_event("health_checks")
            return self._with_connection_policy(self._health(), request, conn)
        arrived, started = self._clock.now(), self._clock.monotonic()
        response, event = self._dynamodb_response(request, conn)
        record = RequestRecord(
            time=arrived,
            lb=self.name,
            client=request.client,
            client_port=request.client_port,
            operation=_operation(request.header("X-Amz-Target")),
            status=0 if conn.killed.is_set() else response.status,
            latency=self._clock.monotonic() - started,
            user_agent=request.header("User-Agent"),
        )
        self._traffic.add_request(record, "dropped" if record.status == 0 else event)
        if record.status == 0:
            return None
        return self._with_connection_policy(response, request, conn)

    def _dynamodb_response(
        self, request: _Request, conn: _ClientConnection
    ) -> tuple[_Response, str | None]:
        """Apply latency and error injection, else forward; also name the event to count."""
        latency = self._faults.latency()
        if latency > 0 and conn.killed.wait(latency):
            return _gateway_error(502, self.name, "the LB went down"), None
        injected = self._faults.draw_error()
        if injected is not None:
            status, sequence = injected
            return _dynamodb_error(status, self.name, f"{self.name}-{sequence}"), "injected_errors"
        return self._forward(request, conn)

    def _forward(self, request: _Request, conn: _ClientConnection) -> tuple[_Response, str | None]:
        """Send ``request`` upstream on a fresh connection and read the whole response.

        A fresh connection per request because moto closes its side after every response;
        reusing one would fail on every other request.
        """
        host, port = self._upstream
        target = f"{self._upstream_url}{request.path}"
        try:
            with socket.create_connection((host, port), self._upstream_timeout) as upstream:
                if not conn.attach_upstream(upstream):
                    return _gateway_error(502, self.name, "the LB went down"), None
                try:
                    return self._exchange(upstream, request), None
                finally:
                    conn.detach_upstream()
        except TimeoutError:
            message = f"no answer from {target} within {self._upstream_timeout} s"
            return _gateway_error(504, self.name, message), "upstream_errors"
        except (OSError, _BadMessage) as error:
            message = f"cannot reach {target}: {type(error).__name__}: {error}"
            return _gateway_error(502, self.name, message), "upstream_errors"

    @staticmethod
    def _exchange(upstream: socket.socket, request: _Request) -> _Response:
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream.sendall(_upstream_request(request))
        with upstream.makefile("rb") as rfile:
            return _read_response(rfile, request.method)

    def _health(self) -> _Response:
        healthy = not self._faults.unhealthy()
        document = {"name": self.name, "healthy": healthy}
        return _json_response(200 if healthy else 503, document, "application/json")

    def _with_connection_policy(
        self, response: _Response, request: _Request, conn: _ClientConnection
    ) -> _Response:
        """Close after this response if the client asked, or if the connection is too old."""
        if request.close_requested:
            return replace(response, close=True)
        if self._clock.monotonic() - conn.accepted_at >= self._max_age:
            self._traffic.add_event("connections_aged_out")
            return replace(response, close=True)
        return response


# --------------------------------------------------------------------------- fleet


class LBFleet:
    """The lab's load balancers: one per (name, address), all on one shared port.

    One port for all because DNS answers carry addresses only: a client combines any
    answered address with the endpoint's port, so every LB must listen on that port.

    Args:
        specs: (name, address) per LB; names unique (not ``"total"``), addresses unique
            127.x.x.x.
        upstream: the emulator URL every LB forwards to.
        port: the shared port; 0 picks one free on every address at ``start``.
        max_connection_age, clock, upstream_timeout: passed to each :class:`LoadBalancer`.
    """

    def __init__(
        self,
        specs: Sequence[tuple[str, str]],
        upstream: str,
        port: int = 0,
        *,
        max_connection_age: float = 60.0,
        clock: Clock = REAL_CLOCK,
        upstream_timeout: float = 30.0,
    ) -> None:
        _check_specs(specs)
        self._port = _port_number("port", port)
        self._lbs = {
            name: LoadBalancer(
                name,
                address,
                port,
                upstream,
                max_connection_age=max_connection_age,
                clock=clock,
                upstream_timeout=upstream_timeout,
            )
            for name, address in specs
        }

    @property
    def port(self) -> int:
        """The shared port (the requested one until ``start``)."""
        return next(iter(self._lbs.values())).port

    def start(self) -> None:
        """Start every LB on one port; with port 0, try fresh ports a bounded number of times.

        Raises:
            LabError: no common free port was found, or the given port is taken.
        """
        attempts = 1 if self._port else _PORT_ATTEMPTS
        last: OSError | None = None
        for _ in range(attempts):
            try:
                self._start_all_on(self._port)
                return
            except OSError as error:
                last = error
                if error.errno != errno.EADDRINUSE:
                    break
        addresses = ", ".join(lb.address for lb in self)
        raise LabError(
            f"LB fleet could not listen on one port on all of {addresses} "
            f"(port {self._port or 'any'}): {last}; free the port or pass port=0"
        ) from last

    def _start_all_on(self, port: int) -> None:
        """Bind the first LB on ``port`` (0 = any), the others on the port it got."""
        started: list[LoadBalancer] = []
        try:
            for lb in self:
                lb._start(port)
                started.append(lb)
                port = lb.port
        except OSError:
            for lb in started:
                lb.stop()
            raise

    def stop(self) -> None:
        for lb in self:
            lb.stop()

    def __enter__(self) -> LBFleet:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __getitem__(self, name: str) -> LoadBalancer:
        try:
            return self._lbs[name]
        except KeyError:
            raise KeyError(f"no LB named {name!r}; the fleet has {sorted(self._lbs)}") from None

    def __iter__(self) -> Iterator[LoadBalancer]:
        return iter(list(self._lbs.values()))

    def __len__(self) -> int:
        return len(self._lbs)

    def counters(self) -> dict[str, Any]:
        """``{lb name: LoadBalancer.counters(), ..., "total": their sum}``."""
        per_lb = {lb.name: lb.counters() for lb in self}
        return {**per_lb, "total": _sum_counts(list(per_lb.values()))}

    def request_log(
        self, since: float | None = None, client: str | None = None, operation: str | None = None
    ) -> list[RequestRecord]:
        """Every LB's kept records, filtered as in ``LoadBalancer.request_log``, by time."""
        records = [record for lb in self for record in lb.request_log(since, client, operation)]
        return sorted(records, key=lambda r: r.time)


def _check_specs(specs: Sequence[tuple[str, str]]) -> None:
    """Names unique and not ``total``; addresses unique loopback (each LB needs its own)."""
    if not specs:
        raise ConfigError("specs", "the fleet has no LBs", "pass [(name, address), ...]")
    names: set[str] = set()
    addresses: set[str] = set()
    for index, (name, address) in enumerate(specs):
        if name in names or name == "total":
            raise ConfigError(f"specs[{index}].name", f"{name!r} is repeated or reserved")
        normalized = _loopback_address(f"specs[{index}].address", address)
        if normalized in addresses:
            raise ConfigError(
                f"specs[{index}].address", f"{address} is used twice", "give each LB its own"
            )
        names.add(name)
        addresses.add(normalized)
