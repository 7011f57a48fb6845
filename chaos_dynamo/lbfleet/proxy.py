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

DynamoDB capacity
    Every forwarded request first waits, in arrival order, for a slot of the fleet's
    :class:`~chaos_dynamo.lbfleet._capacity.BackendCapacity` (unlimited unless set), after
    the LB's own latency and error knobs. A client that gives up meanwhile does not take
    its request back: it is still forwarded when its turn comes (wasted work).

Intermittent connections
    ``set_intermittent`` makes the LB fail a seeded fraction of NEW client connections, as
    a target does whose network state has not propagated yet: ``refuse`` accepts the
    connection and resets it at once (RST, before reading anything); ``blackhole`` accepts
    it and never reads or answers, holding it until the window ends, the knob is cleared
    or changed, the LB goes down or stops (then it is reset). Open keep-alive connections
    are not touched. Health checks (``GET /_lb/health``) arrive on new connections, so
    they see it too. Both are counted (``connections_refused_intermittent``,
    ``connections_blackholed``), and both are in ``connections_accepted``. Blackholed
    connections hold a file descriptor each: all LBs of the process together hold at most a
    quarter of the soft ``RLIMIT_NOFILE`` of them (at least 16); past that an LB resets its
    oldest held connection, or the new one when it holds none (see
    :mod:`chaos_dynamo.lbfleet._sockets`).

Threads
    Each listening socket has one accept thread; each client connection has one thread. A
    fault knob takes effect for the next request (latency, errors, health) or immediately
    (down: the listener and every open client connection are closed before it returns).
    ``close_connections`` is the gentle cut: idle connections close at once, busy ones
    after their current response, and the LB keeps listening, so clients reconnect.
"""

from __future__ import annotations

import io
import socket
import threading
from dataclasses import replace
from typing import Any

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.lbfleet._capacity import BackendCapacity
from chaos_dynamo.lbfleet._http import (
    _BadMessage,
    _read_request,
    _read_response,
    _Request,
    _Response,
    _upstream_request,
    _wire,
)
from chaos_dynamo.lbfleet._lifecycle import _StartStopContext
from chaos_dynamo.lbfleet._responses import (
    DEFAULT_ERROR_CODES,
    ERROR_CODES,
    _dynamodb_error,
    _gateway_error,
    _json_response,
    _wire_bad_request,
)
from chaos_dynamo.lbfleet._sockets import (
    _Blackhole,
    _ClientConnection,
    _Listener,
    _reset_quietly,
    _send_quietly,
)
from chaos_dynamo.lbfleet._state import (
    INTERMITTENT_MODES,
    RequestRecord,
    _Faults,
    _IntermittentWindow,
    _operation,
    _Refusal,
    _select_records,
    _Traffic,
)
from chaos_dynamo.lbfleet._validate import (
    _intermittent,
    _loopback_address,
    _port_number,
    _seconds,
    _upstream_url,
)
from chaos_dynamo.lbfleet.fleet import LBFleet
from chaos_dynamo.services.attribution import SERVICE_HEADER

__all__ = [
    "ERROR_CODES",
    "HEALTH_PATH",
    "INTERMITTENT_MODES",
    "BackendCapacity",
    "LBFleet",
    "LoadBalancer",
    "RequestRecord",
]

HEALTH_PATH = "/_lb/health"
"""GET this path on any LB for its health; answered by the LB itself, never forwarded."""

_IDLE_TIMEOUT_S = 350.0  # NLB's idle timeout: an idle client connection is dropped after this.
_JOIN_TIMEOUT_S = 5.0  # how long stop() waits for each connection thread to finish.


# --------------------------------------------------------------------------- LB


class LoadBalancer(_StartStopContext):
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
        capacity: the DynamoDB capacity this LB's forwarded requests queue for; an
            :class:`LBFleet` shares one among its LBs. None: an unlimited one of its own.
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
        capacity: BackendCapacity | None = None,
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
        self._capacity = BackendCapacity() if capacity is None else capacity
        self._state_lock = threading.Lock()  # running/down/listener/refusal change together
        self._running = False
        self._down = False
        self._listener: _Listener | None = None
        self._refusal: _Refusal | None = None
        self._conns_lock = threading.Lock()
        self._conns: set[_ClientConnection] = set()
        # The intermittent knob, its draw and the blackholed sockets change together. Never
        # held while waiting for _state_lock (the accept thread takes it; down joins that thread).
        self._intermittent_lock = threading.Lock()
        self._intermittent: _IntermittentWindow | None = None
        self._blackhole = _Blackhole()  # in the process's budget, shared by every LB

    # ----------------------------------------------------------------- lifecycle

    @property
    def address(self) -> str:
        return self._address

    @property
    def port(self) -> int:
        """The listening port (the requested one until the first ``start``)."""
        return self._port

    @property
    def capacity(self) -> BackendCapacity:
        """The DynamoDB capacity this LB's forwarded requests queue for."""
        return self._capacity

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
        """Close the listener and every client connection, and wait for their threads.

        Also clears the ``intermittent`` knob (its blackholed connections are reset).
        """
        with self._state_lock:
            running, self._running = self._running, False
            refusal = self._cancel_refusal_locked() if running else None
            self._close_listener_locked()
        window = self._clear_intermittent()
        if window is not None and window.thread is not None:
            window.thread.join(_JOIN_TIMEOUT_S)
        if not running:
            return
        for conn in self._kill_connections():
            if conn.thread is not None:
                conn.thread.join(_JOIN_TIMEOUT_S)
        if refusal is not None and refusal.thread is not None:
            refusal.thread.join(_JOIN_TIMEOUT_S)

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

    def set_error_rate(
        self, rate: float, status: int | None = None, seed: int = 0, code: str | None = None
    ) -> None:
        """Answer a fraction ``rate`` of DynamoDB requests with an error instead of forwarding.

        Args:
            rate: 0.0 (off) .. 1.0 (every request).
            status: without ``code``: 500 (the default) -> ``InternalServerError``; 400 ->
                ``ProvisionedThroughputExceededException`` (throttling). With ``code``: may
                be omitted, else must be that code's status.
            seed: seeds the random.Random that picks the failing requests, so a run replays.
            code: the DynamoDB error to answer, one of :data:`ERROR_CODES`.

        Raises:
            ConfigError: naming ``rate``, ``status`` or ``code``; no knob is changed.
        """
        rate = _seconds("rate", rate, unit="a fraction")
        if rate > 1:
            raise ConfigError("rate", f"{rate!r} is above 1.0", "pass a fraction 0.0..1.0")
        self._faults.set_error_rate(rate, _error_code(status, code), int(seed))

    def set_intermittent(
        self, rate: float, mode: str = "refuse", seconds: float | None = None, seed: int = 0
    ) -> None:
        """Fail a seeded fraction of new client connections (see the module docstring).

        Replaces any previous setting (its blackholed connections are reset) and starts a
        new draw: ``random.Random(f"{seed}:{name}")``, drawn once per accepted connection,
        so the same seed and connection order pick the same connections.

        Args:
            rate: 0.0 (none) .. 1.0 (every new connection).
            mode: ``"refuse"`` (reset at once) or ``"blackhole"`` (held, never answered).
            seconds: the window, in real time (a timer, cancelled by ``clear_intermittent``,
                ``reset_faults`` or ``stop``); the LB's clock only dates it for
                ``faults()``. None: until cleared.
            seed: seeds the draw, with the LB's name.

        Raises:
            ConfigError: naming ``rate``, ``mode``, ``seconds`` or ``seed``; nothing changes.
        """
        knob = _intermittent(rate, mode, seconds, seed)
        with self._intermittent_lock:
            self._clear_intermittent_locked()
            until = None if knob.seconds is None else self._clock.monotonic() + knob.seconds
            window = _IntermittentWindow(knob, self.name, until)
            if knob.seconds is not None:
                window.thread = threading.Thread(
                    target=self._end_intermittent_after,
                    args=(window, knob.seconds),
                    name=f"lb-{self.name}-intermittent",
                    daemon=True,
                )
                window.thread.start()
            self._intermittent = window

    def clear_intermittent(self) -> None:
        """Turn the ``intermittent`` knob off; its blackholed connections are reset."""
        self._clear_intermittent()

    def close_connections(self) -> int:
        """Make every client reconnect: close idle keep-alive connections now, and busy
        ones after their current response (which carries ``Connection: close``).

        A client then opens a new connection for its next request, resolving the
        endpoint's name again. Returns how many connections were closed or marked.
        """
        with self._conns_lock:
            closed = sum(1 for conn in list(self._conns) if conn.retire())
        for _ in range(closed):
            self._traffic.add_event("connections_closed")
        return closed

    def reset_faults(self) -> None:
        """Up, healthy, no latency, no injected errors, no intermittent connections."""
        self._faults.reset()
        self.clear_intermittent()
        self.set_down(False)

    def faults(self) -> dict[str, Any]:
        """The current knobs; ``refusing_for`` is the seconds left of ``refuse_for``, if any;
        ``intermittent`` is ``{"rate", "mode", "seconds_left", "seed"}`` or None
        (``seconds_left`` None: until cleared)."""
        with self._state_lock:
            down = self._down
            refusal = self._refusal
        with self._intermittent_lock:
            window = self._intermittent
            intermittent = None if window is None else window.describe(self._clock.monotonic())
        left = None if refusal is None else max(0.0, refusal.until - self._clock.monotonic())
        return {
            "down": down,
            "refusing_for": left,
            **self._faults.describe(),
            "intermittent": intermittent,
        }

    def _apply_down_locked(self, down: bool) -> None:
        self._down = down
        if not self._running:
            return
        if down:
            self._close_listener_locked()
            self._kill_connections()
            self._blackhole.release()  # after the listener: no accept can add one now
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

    def _clear_intermittent(self) -> _IntermittentWindow | None:
        with self._intermittent_lock:
            return self._clear_intermittent_locked()

    def _clear_intermittent_locked(self) -> _IntermittentWindow | None:
        window, self._intermittent = self._intermittent, None
        if window is not None:
            window.cancelled.set()
        self._blackhole.release()
        return window

    def _end_intermittent_after(self, window: _IntermittentWindow, seconds: float) -> None:
        if window.cancelled.wait(seconds):
            return
        with self._intermittent_lock:
            if self._intermittent is window:
                self._clear_intermittent_locked()

    # ----------------------------------------------------------------- traffic

    def counters(self) -> dict[str, Any]:
        """Cumulative counters, JSON-serializable, never reset and never bounded.

        ``requests``, ``by_client``, ``by_operation`` and ``by_status`` count DynamoDB
        requests (injected errors included, health checks not). Events:
        ``upstream_errors`` (the LB's own 502/504), ``injected_errors``, ``dropped``
        (status 0), ``connections_accepted``, ``connections_aged_out``,
        ``connections_closed`` (by ``close_connections``), ``health_checks``,
        ``bad_requests`` (unparsable HTTP), and the new connections the ``intermittent``
        knob picked: ``connections_refused_intermittent`` (reset) and
        ``connections_blackholed`` (held unanswered), both also in
        ``connections_accepted``. Connections refused while the LB is down cannot be
        counted: see the module docstring.
        """
        return self._traffic.snapshot()

    def request_log(
        self, since: float | None = None, client: str | None = None, operation: str | None = None
    ) -> list[RequestRecord]:
        """Kept records at or after ``since`` (clock ``now``), filtered, in time order."""
        return _select_records(self._traffic.records(), since, client, operation)

    def _accept(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        """Called by the accept thread: apply the intermittent knob, else register the
        connection and give it a thread."""
        self._traffic.add_event("connections_accepted")
        if self._intermittent_fault(sock):
            return
        conn = _ClientConnection(sock, peer[0], peer[1], self._clock.monotonic())
        conn.thread = threading.Thread(
            target=self._serve_connection, args=(conn,), name=f"lb-{self.name}-conn", daemon=True
        )
        with self._conns_lock:
            self._conns.add(conn)
        try:
            conn.thread.start()
        except RuntimeError:  # no more threads: shed the connection rather than the LB
            self._forget(conn)

    def _intermittent_fault(self, sock: socket.socket) -> bool:
        """Reset or hold a new connection if the intermittent knob picks it; True if it did.

        Counted first, so a client that saw its connection reset finds it counted.
        """
        with self._intermittent_lock:
            window = self._intermittent
            if window is None or not window.draw():
                return False
            if window.knob.mode == "blackhole":
                self._traffic.add_event("connections_blackholed")
                self._blackhole.hold(sock)
            else:
                self._traffic.add_event("connections_refused_intermittent")
                _reset_quietly(sock)
        return True

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
            conn.begin_request()
            response = self._answer(request, conn)
            if response is None:
                return
            if not response.close and conn.retiring():
                response = replace(response, close=True)
            conn.sock.sendall(_wire(request, response))
            if not conn.end_request() or response.close:
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
        self._capacity.wake()  # requests of these connections waiting for a slot give up
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
            service=request.header(SERVICE_HEADER),
        )
        self._traffic.add_request(record, "dropped" if record.status == 0 else event)
        if record.status == 0:
            return None
        return self._with_connection_policy(response, request, conn)

    def _dynamodb_response(
        self, request: _Request, conn: _ClientConnection
    ) -> tuple[_Response, str | None]:
        """Apply latency and error injection, else forward (holding a slot of the fleet's
        DynamoDB capacity); also name the event to count.

        An injected error is the LB's own answer, so it takes no capacity.
        """
        latency = self._faults.latency()
        if latency > 0 and conn.killed.wait(latency):
            return _gateway_error(502, self.name, "the LB went down"), None
        injected = self._faults.draw_error()
        if injected is not None:
            code, sequence = injected
            return _dynamodb_error(code, self.name, f"{self.name}-{sequence}"), "injected_errors"
        served = self._capacity.serve(conn.killed, lambda: self._forward(request, conn))
        if served is None:
            return _gateway_error(502, self.name, "the LB went down"), None
        return served

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


def _error_code(status: int | None, code: str | None) -> str:
    """The DynamoDB error code a ``set_error_rate(status=..., code=...)`` asks for."""
    if code is None:
        status = 500 if status is None else status
        if isinstance(status, bool) or status not in DEFAULT_ERROR_CODES:
            raise ConfigError(
                "status",
                f"{status!r} is not injectable",
                f"pass one of {sorted(DEFAULT_ERROR_CODES)}, or a code: one of {list(ERROR_CODES)}",
            )
        return DEFAULT_ERROR_CODES[status]
    if code not in ERROR_CODES:
        raise ConfigError(
            "code", f"{code!r} is not an injectable DynamoDB error", f"pass one of {list(ERROR_CODES)}"
        )
    if status is not None and status != ERROR_CODES[code]:
        raise ConfigError(
            "status",
            f"{status!r} is not the status of {code} ({ERROR_CODES[code]})",
            "omit status when giving a code",
        )
    return code
