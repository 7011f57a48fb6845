"""The lab driver: a lease fleet's ops carried by boto3 over real sockets.

:func:`execute` performs one :class:`~chaos_dynamo.lease.ops.Op` against a DynamoDB table
with the meaning :mod:`chaos_dynamo.lease.ops` gives it, and turns whatever botocore says
into a :class:`~chaos_dynamo.lease.ops.Result`: a failed condition is
``CONDITION_FAILED``, a read or connect timeout ``TIMEOUT``, anything else ``ERROR`` with
the AWS error code (or the exception's type; ``dns`` when the endpoint's name resolved to
nothing) as its detail.

:class:`LabDriver` runs a fleet: it asks the fleet for ops, hands each to a thread pool
that calls :func:`execute`, and feeds the answers back as they arrive (a queue, so the
fleet itself is only ever touched by one thread at a time). An op still unanswered
``Op.timeout`` seconds after it was handed over is answered ``TIMEOUT`` by the driver, and
the real answer, when it comes, is dropped: the client gave up, even if the store went on
to apply the write.

The clients come from :func:`make_clients`: one per op kind, each with that kind's
timeout as botocore's ``read_timeout`` (so a thread is not held long past the driver's
deadline), botocore retries off (the fleet and its manager are the retry policy), and a
connection pool as large as the thread pool.
"""

from __future__ import annotations

import collections
import concurrent.futures
import queue
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.errors import AwsError
from chaos_dynamo.lease.ops import Kind, LeaseItem, Op, Outcome, Result

__all__ = [
    "ATTRIBUTES",
    "DEFAULT_TABLE",
    "POOL_SIZE",
    "Fleet",
    "LabDriver",
    "execute",
    "make_clients",
]

DEFAULT_TABLE = "chaos-dynamo-leases"
KEY, OWNER, EXPIRES_AT, VERSION = "lease_id", "owner", "expires_at", "version"
ATTRIBUTES = (KEY, OWNER, EXPIRES_AT, VERSION)
"""The reference fleets' lease item: hash key, holder, expiry (epoch s), version."""
POOL_SIZE = 64
CONNECT_TIMEOUT = 0.5
"""Seconds to open a connection (loopback: a longer wait means nothing is listening)."""
CONDITION_FAILED_CODE = "ConditionalCheckFailedException"
MIN_WAIT, MAX_WAIT = 0.001, 60.0
"""Bounds of one wait for an answer (seconds)."""

T = TypeVar("T")


class Fleet(Protocol):
    """What the driver needs of a fleet (:class:`chaos_dynamo.lease.fleet.LeaseFleet`)."""

    def poll(self, now: float) -> list[Op]: ...

    def complete(self, result: Result, now: float) -> list[Op]: ...

    def next_wake(self) -> float: ...


# --- one op ------------------------------------------------------------------------------

def _n(value: float) -> dict[str, str]:
    if isinstance(value, int):
        return {"N": str(value)}
    return {"N": repr(float(value))}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def parse_item(item: Mapping[str, Any]) -> LeaseItem:
    """A DynamoDB item (attribute-value map) as a lease; ValueError naming what is missing."""
    try:
        return LeaseItem(key=str(item[KEY]["S"]), owner=str(item[OWNER]["S"]),
                         expires_at=float(item[EXPIRES_AT]["N"]),
                         version=int(float(item[VERSION]["N"])))
    except KeyError as exc:
        raise ValueError(f"lease item without a usable {exc.args[0]!r}") from None


def _renew(client: Any, table: str, op: Op) -> Result:
    client.update_item(
        TableName=table, Key={KEY: _s(op.key)},
        UpdateExpression="SET #e = :e, #v = :next",
        ConditionExpression="#v = :v AND #o = :me",
        ExpressionAttributeNames={"#e": EXPIRES_AT, "#v": VERSION, "#o": OWNER},
        ExpressionAttributeValues={":e": _n(op.expires_at), ":next": _n(op.version + 1),
                                   ":v": _n(op.version), ":me": _s(op.owner)})
    return Result(op.id, Outcome.OK)


def _read(client: Any, table: str, op: Op) -> Result:
    answer = client.get_item(TableName=table, Key={KEY: _s(op.key)}, ConsistentRead=True)
    raw = answer.get("Item")
    if raw is None:
        return Result(op.id, Outcome.OK, item=None)
    try:
        item = parse_item(raw)
    except ValueError as exc:
        return Result(op.id, Outcome.ERROR, detail=str(exc))
    return Result(op.id, Outcome.OK, item=item)


def _acquire(client: Any, table: str, op: Op) -> Result:
    client.put_item(
        TableName=table,
        Item={KEY: _s(op.key), OWNER: _s(op.owner), EXPIRES_AT: _n(op.expires_at),
              VERSION: _n(op.version + 1)},
        ConditionExpression="attribute_not_exists(#k) OR (#v = :v AND (#o = :me OR #e < :now))",
        ExpressionAttributeNames={"#k": KEY, "#v": VERSION, "#o": OWNER, "#e": EXPIRES_AT},
        ExpressionAttributeValues={":v": _n(op.version), ":me": _s(op.owner), ":now": _n(op.now)})
    return Result(op.id, Outcome.OK)


_PERFORM: dict[Kind, Callable[[Any, str, Op], Result]] = {
    Kind.RENEW: _renew, Kind.READ: _read, Kind.ACQUIRE: _acquire}


def _name_not_resolved(error: BaseException) -> bool:
    cause = getattr(error, "kwargs", {}).get("error")
    while cause is not None:
        if isinstance(cause, socket.gaierror) or type(cause).__name__ == "NameResolutionError":
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def execute(client: Any, op: Op, table: str = DEFAULT_TABLE) -> Result:
    """Perform ``op`` on ``table`` with a boto3 DynamoDB client; never raises.

    Returns:
        ``OK`` (a read carries the item, or None when absent); ``CONDITION_FAILED``;
        ``TIMEOUT`` when botocore's read or connect timeout fired; ``ERROR`` otherwise,
        with ``detail`` the AWS error code, ``dns`` when the endpoint's name resolved to
        nothing, or the exception's type.
    """
    import botocore.exceptions as bx

    try:
        return _PERFORM[op.kind](client, table, op)
    except bx.ClientError as exc:
        code = AwsError.from_client_error(exc).code
        if code == CONDITION_FAILED_CODE:
            return Result(op.id, Outcome.CONDITION_FAILED, detail=code)
        return Result(op.id, Outcome.ERROR, detail=code)
    except (bx.ReadTimeoutError, bx.ConnectTimeoutError) as exc:
        return Result(op.id, Outcome.TIMEOUT, detail=type(exc).__name__)
    except bx.EndpointConnectionError as exc:
        return Result(op.id, Outcome.ERROR,
                      detail="dns" if _name_not_resolved(exc) else type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - every failure is an answer to the fleet
        return Result(op.id, Outcome.ERROR, detail=type(exc).__name__)


def make_clients(timeouts: Mapping[Kind, float], *, pool_size: int = POOL_SIZE,
                 connect_timeout: float = CONNECT_TIMEOUT,
                 endpoint_url: str | None = None) -> dict[Kind, Any]:
    """One boto3 DynamoDB client per op kind, ``read_timeout`` = that kind's timeout.

    Botocore retries are off (``total_max_attempts`` 1, standard mode; botocore's
    ``max_attempts`` counts retries, so ``max_attempts: 1`` would still retry once): one op
    is one request.
    The endpoint, region and credentials come from the environment unless ``endpoint_url``
    is given.
    """
    import boto3
    from botocore.config import Config

    clients: dict[Kind, Any] = {}
    for kind in Kind:
        timeout = float(timeouts[kind])
        config = Config(read_timeout=timeout, connect_timeout=min(connect_timeout, timeout),
                        retries={"total_max_attempts": 1, "mode": "standard"},
                        max_pool_connections=pool_size)
        kwargs: dict[str, Any] = {"config": config}
        if endpoint_url:
            kwargs["endpoint_url"] = endpoint_url
        clients[kind] = boto3.client("dynamodb", **kwargs)
    return clients


# --- the loop ----------------------------------------------------------------------------

_WAKE = object()
"""Put in the answer queue to wake the loop (stop was requested)."""


class _Answer(NamedTuple):
    result: Result
    finished: float  # the clock's now() when the answer came back


F = TypeVar("F", bound=Fleet)


class LabDriver(Generic[F]):
    """Run a fleet against real DynamoDB through a thread pool, until stopped.

    Args:
        fleet: the state machine (only this driver's loop calls it, under :meth:`read`'s lock).
        clients: a boto3 DynamoDB client per op kind (:func:`make_clients`).
        table: the lease table.
        clock: ``now`` is the fleet's time (epoch seconds, like the expiries it writes).
        pool_size: threads carrying ops at once; an op waiting for a thread is already
            on its clock.
        perform: what carries one op (default :func:`execute`); tests replace it.
    """

    def __init__(self, fleet: F, clients: Mapping[Kind, Any], *, table: str = DEFAULT_TABLE,
                 clock: Clock = REAL_CLOCK, pool_size: int = POOL_SIZE,
                 perform: Callable[[Any, Op, str], Result] = execute) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        self.fleet = fleet
        self.clients = dict(clients)
        self.table = table
        self.clock = clock
        self.pool_size = pool_size
        self.perform = perform
        self._lock = threading.Lock()
        self._answers: queue.Queue[object] = queue.Queue()
        self._pending: dict[int, tuple[Op, float]] = {}  # op id -> (op, deadline)
        self._futures: set[concurrent.futures.Future[None]] = set()
        self.sent: collections.Counter[str] = collections.Counter()
        self.results: collections.Counter[tuple[str, str]] = collections.Counter()
        self.late = 0
        """Answers that came after the driver had already answered TIMEOUT (dropped)."""

    def read(self, fn: Callable[[F], T]) -> T:
        """``fn(fleet)`` under the loop's lock: a consistent view from another thread."""
        with self._lock:
            return fn(self.fleet)

    def counters(self) -> tuple[dict[str, int], dict[tuple[str, str], int], int]:
        """(ops sent by kind, results by (kind, outcome), late answers dropped)."""
        with self._lock:
            return dict(self.sent), dict(self.results), self.late

    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    def run(self, stop: threading.Event, *, grace: float = 1.0) -> bool:
        """Drive the fleet until ``stop`` is set; True when every op thread had ended
        within ``grace`` seconds after that (else some are still inside botocore)."""
        executor = concurrent.futures.ThreadPoolExecutor(self.pool_size, thread_name_prefix="lease-op")

        def wake_on_stop() -> None:
            stop.wait()
            self._answers.put(_WAKE)

        threading.Thread(target=wake_on_stop, name="lease-driver-stop", daemon=True).start()
        try:
            item: object = None
            while not stop.is_set():
                self._step(executor, item)
                item = self._wait()
        finally:
            executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            futures = list(self._futures)
        _, running = concurrent.futures.wait(futures, timeout=grace)
        return not running

    # One pass: answers in, deadlines checked, due work out.
    def _step(self, executor: concurrent.futures.Executor, first: object) -> None:
        item = first
        while True:
            if isinstance(item, _Answer):
                self._deliver(item, executor)
            try:
                item = self._answers.get_nowait()
            except queue.Empty:
                break
        with self._lock:
            now = self.clock.now()
            expired = [op for op, deadline in self._pending.values() if deadline <= now]
        for op in expired:
            self._deliver(_Answer(Result(op.id, Outcome.TIMEOUT, detail="deadline"), now), executor)
        with self._lock:
            ops = self.fleet.poll(self.clock.now())
        self._send(ops, executor)

    def _wait(self) -> object:
        """The next answer, or None once the fleet or a deadline wants the loop."""
        with self._lock:
            wake = self.fleet.next_wake()
            if self._pending:
                wake = min(wake, min(deadline for _, deadline in self._pending.values()))
            timeout = wake - self.clock.now()
        try:
            # The floor keeps a fleet whose next_wake is already past from spinning a core.
            return self._answers.get(timeout=min(max(timeout, MIN_WAIT), MAX_WAIT))
        except queue.Empty:
            return None

    def _deliver(self, answer: _Answer, executor: concurrent.futures.Executor) -> None:
        result = answer.result
        with self._lock:
            entry = self._pending.pop(result.op_id, None)
            if entry is None:
                self.late += 1
                return
            op, deadline = entry
            if answer.finished > deadline and result.outcome is not Outcome.TIMEOUT:
                result = Result(op.id, Outcome.TIMEOUT, detail="deadline")
            self.results[(op.kind.value, result.outcome.value)] += 1
            follow = self.fleet.complete(result, self.clock.now())
        self._send(follow, executor)

    def _send(self, ops: list[Op], executor: concurrent.futures.Executor) -> None:
        if not ops:
            return
        with self._lock:
            now = self.clock.now()
            for op in ops:
                self._pending[op.id] = (op, now + op.timeout)
                self.sent[op.kind.value] += 1
        for op in ops:
            try:
                future = executor.submit(self._carry, op)
            except RuntimeError:  # shut down meanwhile: the op is never sent
                return
            with self._lock:
                self._futures.add(future)
            future.add_done_callback(self._forget)

    def _forget(self, future: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def _carry(self, op: Op) -> None:
        try:
            result = self.perform(self.clients[op.kind], op, self.table)
        except Exception as exc:  # noqa: BLE001 - a bug in perform must not stall the fleet
            result = Result(op.id, Outcome.ERROR, detail=type(exc).__name__)
        self._answers.put(_Answer(result, self.clock.now()))
