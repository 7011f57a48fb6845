"""A small DNS stub client: ask one server one question, over UDP or TCP.

Stdlib only, for the same reason as :mod:`chaos_dynamo.dns.wire`: the ``getaddrinfo``
shim imports it at interpreter start in the service under test. Like a real stub
resolver it takes an answer only from the server it asked, with the id and question it
sent (anything else is a stray datagram and is ignored), and falls back to TCP when the
UDP answer is truncated.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import time
from dataclasses import dataclass

from chaos_dynamo.dns import wire

__all__ = ["DnsAnswer", "DnsTimeout", "check_source", "query"]

_ADDRESS_TYPES = frozenset({"A", "AAAA"})
_ids = random.SystemRandom()
"""Query ids are guessable-resistance, not simulation: they come from the OS, unseeded."""


class DnsTimeout(TimeoutError):
    """No usable answer from the server in time, after every attempt."""


@dataclass(frozen=True)
class DnsAnswer:
    """What the server said: the rcode and the answer records as text.

    ``answers`` are (name, type, ttl, value); names lower case with a trailing dot.
    ``transport`` says which transport gave the answer ("tcp" after a truncated UDP one).
    """

    rcode: str
    answers: tuple[tuple[str, str, int, str], ...]
    transport: str = "udp"

    @property
    def addresses(self) -> tuple[str, ...]:
        """The A and AAAA values, in answer order."""
        return tuple(value for _, rtype, _, value in self.answers if rtype in _ADDRESS_TYPES)


def query(
    server: tuple[str, int], name: str, qtype: str = "A", *, timeout: float = 1.0,
    tcp: bool = False, retries: int = 1, rng: random.Random | None = None, source: str | None = None,
) -> DnsAnswer:
    """Ask ``server`` for ``name``/``qtype`` (class IN, RD clear, no EDNS).

    Args:
        server: (host, port) of the DNS server.
        timeout: seconds to wait for each attempt.
        tcp: ask over TCP from the start.
        retries: further attempts after the first one times out.
        rng: source of query ids, for replayable traces; the OS's by default.
        source: send from this IPv4 loopback address (127.0.0.x), so the server's log
            tells this client apart from others; the kernel's choice by default.

    Raises:
        ValueError: ``source`` is not an IPv4 loopback address (nothing is sent).
        DnsTimeout: no answer after ``1 + retries`` attempts (a refused or reset
            connection counts as no answer, as it does for a resolver).
        wire.WireError: ``name`` or ``qtype`` cannot be put in a query.
    """
    ids = rng or _ids
    if source is not None:
        check_source(source)
    problems: list[str] = []
    for _ in range(max(0, retries) + 1):
        qid = ids.getrandbits(16)
        message = wire.build_query(qid, name, qtype)
        try:
            if not tcp:
                reply = _ask_udp(server, message, timeout, source)
                if not reply.truncated:
                    return _answer(reply, "udp")
            return _answer(_ask_tcp(server, message, timeout, source), "tcp")
        except (TimeoutError, OSError, wire.WireError) as error:
            problems.append(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
    raise DnsTimeout(
        f"no answer from {server[0]}:{server[1]} for {name} {qtype} after "
        f"{max(0, retries) + 1} attempt(s) of {timeout}s ({'; '.join(problems)}); "
        "is the lab DNS running on that address?"
    )


def check_source(source: str) -> str:
    """Return ``source`` if it is an IPv4 loopback address; ValueError otherwise.

    Only loopback: a source address elsewhere would send the query off the machine's
    loopback interface, which the lab never does.
    """
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        address = None
    if not isinstance(address, ipaddress.IPv4Address) or not address.is_loopback:
        raise ValueError(f"source address {source!r} is not an IPv4 loopback address (127.0.0.x)")
    return source


def _answer(reply: wire.Response, transport: str) -> DnsAnswer:
    answers = tuple((n.lower(), t, ttl, v) for n, t, ttl, v in reply.answers)
    return DnsAnswer(rcode=reply.rcode, answers=answers, transport=transport)


def _matches(reply: bytes, message: bytes) -> bool:
    """Same id, QR set, and the question we asked (names compare case-insensitively)."""
    if len(reply) < 12 or reply[:2] != message[:2] or not reply[2] & 0x80:
        return False
    question = message[12:]
    return reply[4:6] == b"\x00\x01" and reply[12 : 12 + len(question)].lower() == question.lower()


def _ask_udp(server: tuple[str, int], message: bytes, timeout: float, source: str | None = None) -> wire.Response:
    """Send once, then read until a matching reply or the deadline; strays are ignored."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if source is not None:
            sock.bind((source, 0))
        sock.connect(server)  # the kernel then drops datagrams from anyone else
        sock.send(message)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no UDP answer within {timeout}s")
            sock.settimeout(remaining)
            reply = sock.recv(65535)
            if _matches(reply, message):
                return wire.parse_response(reply)


def _ask_tcp(server: tuple[str, int], message: bytes, timeout: float, source: str | None = None) -> wire.Response:
    """One length-prefixed exchange on a fresh connection, all within ``timeout``."""
    deadline = time.monotonic() + timeout
    bind = (source, 0) if source is not None else None
    with socket.create_connection(server, timeout=timeout, source_address=bind) as sock:
        sock.sendall(len(message).to_bytes(2, "big") + message)
        while True:
            length = int.from_bytes(_read(sock, 2, deadline), "big")
            reply = _read(sock, length, deadline)
            if _matches(reply, message):
                return wire.parse_response(reply)


def _read(sock: socket.socket, size: int, deadline: float) -> bytes:
    data = bytearray()
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("TCP answer did not arrive in time")
        sock.settimeout(remaining)
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("server closed the TCP connection mid-answer")
        data.extend(chunk)
    return bytes(data)
