"""An LB's sockets: the listening socket with its accept thread, the accepted client
connections, each of which another thread can cut at once (``set_down``, ``stop``) or
retire gracefully (``close_connections``), and the connections the ``intermittent`` knob
resets or holds unanswered.

File descriptors
    Blackholed connections hold a descriptor each and no thread, so they are the ones a
    connection storm can pile up. Every LB of the process shares one budget for them, a
    quarter of the soft ``RLIMIT_NOFILE`` read at import (:func:`blackhole_budget`; at least
    16): an LB past it resets its own oldest held connection to hold the new one, or resets
    the new one at once when it holds none (the others hold the budget). Should accept
    still run out of descriptors (EMFILE/ENFILE: many served connections) or kernel memory
    (ENOBUFS/ENOMEM), the accept thread waits briefly (on its close event, so ``close`` is
    not delayed) instead of spinning on a listener that stays readable.
"""

from __future__ import annotations

import errno
import resource
import selectors
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable

_LISTEN_BACKLOG = 512  # a retry storm opens many connections at once; do not drop SYNs.
_BLACKHOLE_SHARE = 4  # blackholed connections may hold 1/4 of the process's descriptors.
_BLACKHOLE_MIN = 16
_UNLIMITED_FDS = 65_536  # what an unlimited soft RLIMIT_NOFILE counts as.
_OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_BACKOFF_S = 0.05  # accept out of descriptors: wait this long before trying again.


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def _reset_quietly(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset (SO_LINGER 0): the peer sees ECONNRESET, not EOF."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _shutdown_quietly(sock: socket.socket) -> None:
    """Shut both directions so a thread blocked on ``sock`` wakes up; it may be closed already."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _ClientConnection:
    """One accepted client connection, and the means to cut or retire it from another thread.

    Between requests the connection is *idle* (its thread waits for the next request);
    from a request read in full until its response is written it is *busy*.
    """

    def __init__(self, sock: socket.socket, host: str, port: int, accepted_at: float) -> None:
        self.sock = sock
        self.host = host
        self.port = port
        self.accepted_at = accepted_at
        self.killed = threading.Event()
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._upstream: socket.socket | None = None
        self._busy = False
        self._retiring = False

    def kill(self) -> None:
        """Cut the connection (and its upstream request, if any) now; its thread then ends."""
        with self._lock:
            self._kill_locked()

    def _kill_locked(self) -> None:
        self.killed.set()
        _shutdown_quietly(self.sock)
        if self._upstream is not None:
            _shutdown_quietly(self._upstream)

    def retire(self) -> bool:
        """Close an idle connection now; make a busy one close after its current response.

        A client whose request crosses the close on the wire (sent just as an idle
        connection is closed) sees the connection reset, as with any server that closes
        an idle keep-alive connection. Returns False if the connection was already cut.
        """
        with self._lock:
            if self.killed.is_set():
                return False
            if self._busy:
                self._retiring = True
            else:
                self._kill_locked()
            return True

    def begin_request(self) -> None:
        """A request has been read: the connection is busy until ``end_request``."""
        with self._lock:
            self._busy = True

    def retiring(self) -> bool:
        """True once ``retire`` asked a busy connection to close after this response."""
        with self._lock:
            return self._retiring

    def end_request(self) -> bool:
        """The response is written: idle again; False if it must close now instead."""
        with self._lock:
            self._busy = False
            return not self._retiring

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


def blackhole_budget(soft_limit: int | None = None) -> int:
    """How many blackholed connections every LB of the process may hold together: a quarter
    of ``soft_limit`` (default: the soft ``RLIMIT_NOFILE`` now), at least 16."""
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY or soft_limit <= 0:
        soft_limit = _UNLIMITED_FDS
    return max(_BLACKHOLE_MIN, soft_limit // _BLACKHOLE_SHARE)


class _HoldBudget:
    """A count of held sockets shared by several :class:`_Blackhole`; thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._used = 0

    def take(self) -> bool:
        """Take one slot; False when none is left."""
        with self._lock:
            if self._used >= self.limit:
                return False
            self._used += 1
            return True

    def give_back(self, count: int) -> None:
        with self._lock:
            self._used -= count

    @property
    def used(self) -> int:
        with self._lock:
            return self._used


_BLACKHOLE_BUDGET = _HoldBudget(blackhole_budget())
"""The budget every LB of the process holds its blackholed connections in."""


class _Blackhole:
    """Accepted connections held open and never read or answered, until ``release``.

    No thread per connection: the sockets just sit here, each taking a slot of ``budget``
    (default: the process's, shared by every LB). With none left, the oldest held here is
    reset to hold the new one, or the new one is reset at once when none is held here, so a
    connection storm cannot exhaust the process's file descriptors. Thread-safe.
    """

    def __init__(self, budget: _HoldBudget | None = None) -> None:
        self._lock = threading.Lock()
        self._held: deque[socket.socket] = deque()
        self._budget = _BLACKHOLE_BUDGET if budget is None else budget

    def hold(self, sock: socket.socket) -> None:
        with self._lock:
            if self._budget.take():
                self._held.append(sock)
                evicted = None
            elif self._held:  # swap: the slot of our oldest goes to the new one
                evicted = self._held.popleft()
                self._held.append(sock)
            else:
                evicted = sock
        if evicted is not None:
            _reset_quietly(evicted)

    def release(self) -> int:
        """Reset every held connection (the client sees ECONNRESET); return how many."""
        with self._lock:
            held, self._held = list(self._held), deque()
            self._budget.give_back(len(held))
        for sock in held:
            _reset_quietly(sock)
        return len(held)

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)


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
        self._closing = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name=f"lb-{name}-accept", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting and close the listening socket; returns once it is closed."""
        self._closing.set()
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
        except OSError as error:  # the client gave up between select and accept, or no fds left
            if error.errno in _OUT_OF_FDS:
                # The pending connection stays queued and select() says so at once: without
                # a pause this thread would spin until a descriptor frees up. close() ends it.
                self._closing.wait(_ACCEPT_BACKOFF_S)
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
