"""A loopback DNS load generator on raw UDP sockets, run as its own process.

Two shapes of load, both bounded in query count and in time:

closed
    ``window`` queries in flight on one socket; each answer sends the next one. This
    finds the server's maximum throughput (the server is the bottleneck, not the pacing).
paced
    queries sent on a fixed schedule (``rate`` per second) whatever the server does,
    with at most ``max_in_flight`` outstanding. This measures latency at a given offered
    load. Latency is measured from the actual send; the lag of the sender behind its
    schedule is reported apart, so a slow generator cannot pass for a slow server.

Queries cycle through a mix of (name, expectation) pairs: ``answer`` expects NOERROR with
at least one record, ``nxdomain`` expects NXDOMAIN. Anything else counts as ``wrong``.

Usage (prints one JSON object)::

    python bench/dns_load.py --server 127.0.0.1:5353 --mode paced --rate 5000 --duration 5 \\
        --name dynamodb.us-east-1.amazonaws.com:answer:3 \\
        --name no-such-name.us-east-1.amazonaws.com:nxdomain:1
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import select
import socket
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

HARD_MAX_QUERIES = 2_000_000
"""No run sends more than this, whatever it is asked."""
HARD_MAX_SECONDS = 60.0
"""No run sends for longer than this, whatever it is asked."""
SLOW_S = 0.005
"""An answer slower than this (the p99 target) is counted as ``slow``."""
_RCODES = {"answer": 0, "nxdomain": 3}


@dataclass(frozen=True)
class Probe:
    """One question of the mix: a query template and what its answer must look like."""

    name: str
    expect: str
    template: bytes


@dataclass
class LoadStats:
    """What one run saw; latencies in seconds, in the order answers arrived."""

    mode: str
    offered_rate: float
    sent: int = 0
    answered: int = 0
    lost: int = 0
    wrong: int = 0
    stray: int = 0
    skipped: int = 0
    elapsed_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    send_lags: list[float] = field(default_factory=list)
    by_expect: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts, throughput and latency percentiles in milliseconds, JSON-ready."""
        lat = sorted(self.latencies)
        lag = sorted(self.send_lags)
        return {
            "mode": self.mode, "offered_rate": self.offered_rate, "sent": self.sent,
            "answered": self.answered, "lost": self.lost, "wrong": self.wrong,
            "stray": self.stray, "skipped": self.skipped, "by_expect": self.by_expect,
            "elapsed_s": round(self.elapsed_s, 4),
            "qps": round(self.answered / self.elapsed_s, 1) if self.elapsed_s > 0 else 0.0,
            "p50_ms": _pct_ms(lat, 50), "p90_ms": _pct_ms(lat, 90), "p99_ms": _pct_ms(lat, 99),
            "p999_ms": _pct_ms(lat, 99.9), "max_ms": _pct_ms(lat, 100),
            "slow": len(lat) - bisect.bisect_right(lat, SLOW_S), "slow_limit_ms": SLOW_S * 1000,
            "send_lag_p99_ms": _pct_ms(lag, 99), "send_lag_max_ms": _pct_ms(lag, 100),
        }


def _pct_ms(ordered: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of sorted seconds, in ms; None when there are none."""
    if not ordered:
        return None
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return round(ordered[min(rank, len(ordered)) - 1] * 1000.0, 4)


# --- queries --------------------------------------------------------------------------


def encode_name(name: str) -> bytes:
    """``a.b.`` in DNS wire form (uncompressed)."""
    labels = [label for label in name.rstrip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\x00"


def make_probe(name: str, expect: str) -> Probe:
    """A type-A, class-IN query for ``name`` (id 0, RD clear, no EDNS)."""
    if expect not in _RCODES:
        raise ValueError(f"expectation {expect!r} is not one of {sorted(_RCODES)}")
    header = struct.pack(">HHHHHH", 0, 0, 1, 0, 0, 0)
    return Probe(name, expect, header + encode_name(name) + struct.pack(">HH", 1, 1))


def parse_mix(specs: Sequence[str]) -> list[Probe]:
    """``name:expect[:weight]`` specs -> the cycle of probes (each repeated weight times)."""
    cycle: list[Probe] = []
    for spec in specs:
        name, expect, *rest = spec.split(":")
        cycle.extend([make_probe(name, expect)] * int(rest[0] if rest else 1))
    if not cycle:
        raise ValueError("give at least one --name")
    return cycle


def _answer_ok(reply: bytes, expect: str) -> bool:
    """QR set, the expected rcode, and for ``answer`` at least one answer record."""
    if len(reply) < 12 or not reply[2] & 0x80:
        return False
    rcode = reply[3] & 0x0F
    ancount = int.from_bytes(reply[6:8], "big")
    return rcode == _RCODES[expect] and (expect != "answer" or ancount > 0)


# --- the two load shapes --------------------------------------------------------------


class _Flight:
    """Outstanding queries by id, and the bookkeeping of answers."""

    def __init__(self, sock: socket.socket, mix: Sequence[Probe], stats: LoadStats) -> None:
        self.sock = sock
        self.mix = mix
        self.stats = stats
        self.pending: dict[int, tuple[float, Probe]] = {}
        self._next = 0

    def send(self) -> float:
        """Send the next query of the mix; return its send time."""
        probe = self.mix[self._next % len(self.mix)]
        qid = self._next & 0xFFFF
        self._next += 1
        if qid in self.pending:  # 65,536 queries ago and never answered: lost
            self.pending.pop(qid)
            self.stats.lost += 1
        sent_at = time.perf_counter()
        self.sock.send(qid.to_bytes(2, "big") + probe.template[2:])
        self.pending[qid] = (sent_at, probe)
        self.stats.sent += 1
        return sent_at

    def receive(self, reply: bytes, now: float) -> None:
        """Match one reply to its query and record its latency."""
        entry = self.pending.pop(int.from_bytes(reply[:2], "big"), None)
        if entry is None:
            self.stats.stray += 1
            return
        sent_at, probe = entry
        self.stats.answered += 1
        self.stats.latencies.append(now - sent_at)
        self.stats.by_expect[probe.expect] = self.stats.by_expect.get(probe.expect, 0) + 1
        if not _answer_ok(reply, probe.expect):
            self.stats.wrong += 1


def _socket(server: tuple[str, int]) -> socket.socket:
    """A UDP socket connected to ``server`` (the kernel drops datagrams from anyone else)."""
    if not server[0].startswith("127."):
        raise ValueError(f"{server[0]} is not a loopback address: this generator only loads 127.x")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.connect(server)
    return sock


def closed_loop(
    server: tuple[str, int], mix: Sequence[Probe], *, window: int = 32, duration: float = 5.0,
    max_queries: int = 500_000, timeout: float = 0.5,
) -> LoadStats:
    """Keep ``window`` queries in flight for ``duration`` seconds (or ``max_queries``).

    A receive that waits ``timeout`` seconds declares every outstanding query lost and
    refills the window, so a dropped datagram cannot stall the run.
    """
    duration, max_queries = min(duration, HARD_MAX_SECONDS), min(max_queries, HARD_MAX_QUERIES)
    stats = LoadStats("closed", 0.0)
    with _socket(server) as sock:
        sock.settimeout(timeout)
        flight = _Flight(sock, mix, stats)
        start = time.perf_counter()
        deadline = start + duration
        last = start
        for _ in range(min(window, max_queries)):
            flight.send()
        while flight.pending:
            try:
                reply = sock.recv(4096)
            except TimeoutError:
                stats.lost += len(flight.pending)
                flight.pending.clear()
                _refill(flight, window, deadline, max_queries)
                continue
            last = time.perf_counter()
            flight.receive(reply, last)
            if last < deadline and stats.sent < max_queries:
                flight.send()
        stats.elapsed_s = last - start
    return stats


def _refill(flight: _Flight, window: int, deadline: float, max_queries: int) -> None:
    while (len(flight.pending) < window and time.perf_counter() < deadline
           and flight.stats.sent < max_queries):
        flight.send()


def paced(
    server: tuple[str, int], mix: Sequence[Probe], *, rate: float = 5000.0,
    duration: float = 5.0, max_in_flight: int = 256, drain: float = 1.0,
) -> LoadStats:
    """Send ``rate`` queries per second for ``duration`` seconds, on schedule.

    A query due while ``max_in_flight`` are outstanding is skipped (counted), never
    queued. After the last send, answers are awaited for up to ``drain`` seconds; what
    is still outstanding then is lost.
    """
    duration = min(duration, HARD_MAX_SECONDS)
    total = min(int(rate * duration), HARD_MAX_QUERIES)
    interval = 1.0 / rate
    stats = LoadStats("paced", rate)
    with _socket(server) as sock:
        sock.setblocking(False)
        flight = _Flight(sock, mix, stats)
        start = time.perf_counter() + 0.005
        index = 0
        while index < total:
            index = _send_due(flight, start, interval, index, total, max_in_flight)
            _receive_ready(sock, flight)
            wait = start + index * interval - time.perf_counter()
            if index < total and wait > 0:
                select.select([sock], [], [], wait)
        last_send = time.perf_counter()
        _drain(sock, flight, last_send + drain)
        stats.lost += len(flight.pending)
        stats.elapsed_s = last_send - start
    return stats


def _send_due(flight: _Flight, start: float, interval: float, index: int, total: int,
              max_in_flight: int) -> int:
    """Send every query whose time has come; return the index of the next one."""
    now = time.perf_counter()
    while index < total and start + index * interval <= now:
        if len(flight.pending) >= max_in_flight:
            flight.stats.skipped += 1
        else:
            sent_at = flight.send()
            flight.stats.send_lags.append(sent_at - (start + index * interval))
        index += 1
    return index


def _receive_ready(sock: socket.socket, flight: _Flight) -> None:
    """Read every reply already waiting, without blocking."""
    while True:
        try:
            reply = sock.recv(4096)
        except BlockingIOError:
            return
        flight.receive(reply, time.perf_counter())


def _drain(sock: socket.socket, flight: _Flight, deadline: float) -> None:
    while flight.pending:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return
        ready, _, _ = select.select([sock], [], [], remaining)
        if ready:
            _receive_ready(sock, flight)


# --- command line ---------------------------------------------------------------------


def _server(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one load and print its summary as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", type=_server, required=True, help="127.x.x.x:PORT")
    parser.add_argument("--mode", choices=("closed", "paced"), default="closed")
    parser.add_argument("--name", action="append", default=[], help="NAME:answer|nxdomain[:WEIGHT]")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of sending")
    parser.add_argument("--window", type=int, default=32, help="closed: queries in flight")
    parser.add_argument("--rate", type=float, default=5000.0, help="paced: queries per second")
    parser.add_argument("--max-in-flight", type=int, default=256, help="paced: outstanding cap")
    args = parser.parse_args(argv)
    mix = parse_mix(args.name)
    if args.mode == "closed":
        stats = closed_loop(args.server, mix, window=args.window, duration=args.duration)
    else:
        stats = paced(args.server, mix, rate=args.rate, duration=args.duration,
                      max_in_flight=args.max_in_flight)
    json.dump(stats.summary(), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
