"""The LBs' hand-written HTTP/1.1 reader and writer: just enough for a reverse proxy.

Reads a client's request or the upstream's response in full (Content-Length, chunked, or,
for a response, up to the end of the stream; ``Expect: 100-continue`` is answered through a
callback), and serializes each in one buffer. Hand-rolled because the standard library's
parsers cost a real share of the time the LB may add to a request (see ``_read_head``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

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


class _Peer(Protocol):
    """Where a request came from: a client connection's address and source port."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


def _read_request(
    rfile: io.BufferedIOBase, conn: _Peer, on_continue: Callable[[], None]
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
