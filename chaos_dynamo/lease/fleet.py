"""A fleet of leases as a pure state machine: ops out, results in, time passed as ``now``.

This is the part of EC2's DropletWorkflow Manager (DWFM) the October 2025 event hit: one
lease per host, kept alive by periodic conditional renewals. When the store is unreachable
for longer than the lease expiry, every lease expires together; each must then be
re-established by a *job* (read the host's state, then a conditional acquire), and every job
has a deadline. Whether the fleet recovers or collapses is decided by the
:class:`~chaos_dynamo.lease.managers.Manager` that chooses which jobs run when: the fleet
itself only carries out the lease lifecycle below, identically in the lab and in memory.

Lifecycle of one lease:

- *live*: the fleet knows its version and expiry; it renews at ``last_write + renew_every``
  (at most ``renew_concurrency`` renewals in flight). A renewal that times out or errors is
  retried after ``renew_retry`` while the lease has not expired; ``CONDITION_FAILED``
  means someone else wrote it: the lease is *lost*.
- *expired or lost* (``now >= expiry`` as the fleet believes it, or lost): offered to the
  manager, which queues it.
- *job*: ``work_reads`` consistent reads one after another, then an acquire with the
  version the last read saw; all of it must finish by ``start + job_timeout``. Past the
  deadline the job is timed out and any late answer is ignored (the write may still land:
  the next job reads the new version). A read that shows a live lease of another owner
  fails the job with reason ``"held"``. A successful acquire makes the lease live again.

Nothing here does I/O, reads a clock or the global ``random``: the driver passes ``now``
and a seeded :class:`random.Random`, so the same code is replayable in the model.
Every event costs O(log n) (heaps with lazy deletion), so 100,000 leases are cheap.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, fields

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lease.managers import Manager
from chaos_dynamo.lease.ops import Kind, Op, Outcome, Result

__all__ = ["MAX_LEASES", "FleetParams", "FleetStats", "LeaseFleet", "Manager", "lease_keys",
           "validate"]

# Enum members read through the class cost ~0.2 us each on 3.11; these run per event.
_RENEW, _READ, _ACQUIRE = Kind.RENEW, Kind.READ, Kind.ACQUIRE
_OK, _CONDITION_FAILED, _TIMEOUT, _ERROR = (Outcome.OK, Outcome.CONDITION_FAILED,
                                            Outcome.TIMEOUT, Outcome.ERROR)

MAX_LEASES = 1_000_000
INF = math.inf


@dataclass(frozen=True)
class FleetParams:
    """How one fleet holds its leases (all times in seconds).

    Attributes:
        leases: N leases this fleet holds.
        renew_every: H, seconds between two renewals of one lease.
        expiry: E, a renewal or acquire writes ``expires_at = now + E`` (E > H).
        renew_timeout: client timeout of one renewal.
        renew_retry: a failed renewal is retried after this, while the lease is not expired
            (during an outage that is ``leases / renew_retry`` requests a second, bounded by
            ``renew_concurrency``: keep it a fraction of ``renew_every`` for big fleets).
        renew_concurrency: renewals in flight at most.
        work_reads: consistent reads a re-establishment job makes before its acquire (the
            host's state, in DWFM's terms).
        job_timeout: deadline of one re-establishment job, all its ops included.
        key_prefix: keys are ``key_prefix + "%05d" % n``.
        first_key: n runs from ``first_key`` to ``first_key + leases - 1`` (a shard).
    """

    leases: int = 100
    renew_every: float = 4.0
    expiry: float = 10.0
    renew_timeout: float = 1.0
    renew_retry: float = 0.5
    renew_concurrency: int = 8
    work_reads: int = 3
    job_timeout: float = 0.6
    key_prefix: str = "host-"
    first_key: int = 0


@dataclass(frozen=True)
class FleetStats:
    """A snapshot of a fleet's counters.

    Attributes:
        believed_live: leases the fleet believes it holds (renewing, not expired, not lost).
        expired: the others (queued in the manager or in a job): ``total - believed_live``.
        queued: leases waiting in the manager (not in a job).
        in_flight_ops: ops sent and not answered yet (abandoned ones included: their
            connections are still busy).
        jobs_started, jobs_ok: re-establishment jobs started, and those that acquired.
        jobs_timed_out: jobs past their deadline (an op timing out counts here too).
        jobs_failed: jobs that failed otherwise (error, condition failed, held by another).
        jobs_shed: queue entries the manager dropped for age (re-offered later).
        renewals_ok, renewals_failed: renewal answers (failed: timeout, error, condition).
        ops_sent: every op the fleet has sent (the attempts a load balancer would count).
        total: leases in the fleet.
        jobs_in_flight: jobs running now.
    """

    believed_live: int
    expired: int
    queued: int
    in_flight_ops: int
    jobs_started: int
    jobs_ok: int
    jobs_timed_out: int
    jobs_failed: int
    jobs_shed: int
    renewals_ok: int
    renewals_failed: int
    ops_sent: int
    total: int = 0
    jobs_in_flight: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


def _number(params: FleetParams, name: str, *, positive: bool = True) -> float:
    value = getattr(params, name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(name, f"must be a finite number of seconds, got {value!r}",
                          f"set {name} to a number > 0")
    if positive and value <= 0:
        raise ConfigError(name, f"must be > 0 seconds, got {value!r}", f"set {name} > 0")
    return float(value)


def _integer(params: FleetParams, name: str, low: int, high: int) -> int:
    value = getattr(params, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"must be an integer, got {value!r}",
                          f"set {name} to an integer in [{low}, {high}]")
    if not low <= value <= high:
        raise ConfigError(name, f"must be in [{low}, {high}], got {value}",
                          f"set {name} to an integer in [{low}, {high}]")
    return value


def validate(params: FleetParams) -> FleetParams:
    """Check every field; raise :class:`ConfigError` naming the first bad one.

    Returns ``params`` unchanged, so it can wrap a constructor call.
    """
    if not isinstance(params, FleetParams):
        raise ConfigError("params", f"must be a FleetParams, got {type(params).__name__}",
                          "build one with FleetParams(...)")
    _integer(params, "leases", 1, MAX_LEASES)
    for name in ("renew_every", "expiry", "renew_timeout", "renew_retry", "job_timeout"):
        _number(params, name)
    if params.expiry <= params.renew_every:
        raise ConfigError("expiry", f"must be longer than renew_every ({params.renew_every} s), "
                          f"got {params.expiry} s",
                          "make expiry a few renewal periods long (e.g. 2.5 * renew_every)")
    _integer(params, "renew_concurrency", 1, 100_000)
    _integer(params, "work_reads", 0, 1_000)
    _integer(params, "first_key", 0, 10**12)
    if not isinstance(params.key_prefix, str) or not params.key_prefix:
        raise ConfigError("key_prefix", f"must be a non-empty string, got {params.key_prefix!r}",
                          'use e.g. "host-"')
    return params


def fleet_rng(seed: int) -> random.Random:
    """The fleet's random source for ``seed`` (renewal phases), the same in the lab and the model."""
    return random.Random(f"lease-fleet-{seed}")


def manager_rng(seed: int) -> random.Random:
    """The manager's random source for ``seed`` (jitter), the same in the lab and the model."""
    return random.Random(f"lease-manager-{seed}")


def lease_keys(params: FleetParams) -> list[str]:
    """The fleet's keys in order: ``host-00000``, ``host-00001``, ... (from ``first_key``)."""
    return [f"{params.key_prefix}{n:05d}"
            for n in range(params.first_key, params.first_key + params.leases)]


# States of one lease.
_WAIT = 0  # live, waiting for its next renewal (or renewal retry)
_RENEWING = 1  # live, a renewal in flight
_OFFERED = 2  # expired or lost, in the manager's hands
_JOB = 3  # a re-establishment job is running

_NO_JOB = -1


class _Lease:
    __slots__ = ("key", "state", "version", "expires_at", "renew_at", "op_id",
                 "job_id", "job_deadline", "job_reads", "job_version")

    def __init__(self, key: str, version: int, expires_at: float, renew_at: float) -> None:
        self.key = key
        self.state = _WAIT
        self.version = version
        self.expires_at = expires_at
        self.renew_at = renew_at
        self.op_id = -1  # the renewal or job op we are waiting for
        self.job_id = _NO_JOB
        self.job_deadline = 0.0
        self.job_reads = 0
        self.job_version = 0


class _Timers:
    """A min-queue of ``(time, lease index)``, O(1) for the common in-order push.

    Renewals are scheduled ``renew_every`` after their write, and writes come back in
    about the order they were sent, so almost every push is at or after the last one:
    those go to a deque; the rest (retries, out-of-order answers) to a heap.
    """

    __slots__ = ("_run", "_heap")

    def __init__(self, entries: list[tuple[float, int]] | None = None) -> None:
        self._run: deque[tuple[float, int]] = deque()
        self._heap: list[tuple[float, int]] = entries or []
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._run) + len(self._heap)

    def push(self, t: float, index: int) -> None:
        run = self._run
        if not run or t >= run[-1][0]:
            run.append((t, index))
        else:
            heapq.heappush(self._heap, (t, index))

    def first(self) -> float:
        run, heap = self._run, self._heap
        if run:
            return run[0][0] if not heap or run[0][0] <= heap[0][0] else heap[0][0]
        return heap[0][0] if heap else INF

    def pop(self) -> tuple[float, int]:
        run, heap = self._run, self._heap
        if run and (not heap or run[0][0] <= heap[0][0]):
            return run.popleft()
        return heapq.heappop(heap)


class LeaseFleet:
    """The leases one process holds, their renewals and their re-establishment jobs.

    Args:
        params: the fleet's settings (validated here).
        manager: decides which expired leases get a job, and when.
        owner: the owner id written into every lease.
        now: the current time (epoch seconds): every lease starts live with expiry
            ``now + expiry``.
        rng: spreads the first renewals uniformly over ``[now, now + renew_every)``.
        versions: each lease's current version (default 1).

    Drive it with :meth:`poll` (at :meth:`next_wake` at the latest) and :meth:`complete`
    (once per op sent, with its answer); send the ops either returns right away. ``now``
    must not go backwards.
    """

    def __init__(self, params: FleetParams, manager: Manager, *, owner: str, now: float,
                 rng: random.Random, versions: Mapping[str, int] | None = None) -> None:
        validate(params)
        self.params = params
        self.manager = manager
        self.owner = owner
        self._now = now
        self._leases: list[_Lease] = []
        self._index: dict[str, int] = {}
        # Expiry is watched only for leases at risk (a renewal answer or retry that could
        # come after the expiry, a renewal waiting for a free slot): a live lease whose
        # next renewal is due before its expiry needs no watch, which keeps the steady
        # state to one queue operation per renewal.
        self._expiry_heap: list[tuple[float, int]] = []
        self._job_heap: list[tuple[float, int, int]] = []
        self._backlog: deque[tuple[float, int]] = deque()  # due renewals waiting for a slot
        # op id -> (lease index, job id or _NO_JOB for a renewal, expires_at it writes)
        self._ops: dict[int, tuple[int, int, float]] = {}
        self._next_op = 1
        self._next_job = 1
        self._renewals_in_flight = 0
        self._limit = params.renew_concurrency
        self._jobs_in_flight = 0
        self._offered = 0  # leases in the manager's hands (neither live nor in a job)
        self.jobs_started = 0
        self.jobs_ok = 0
        self.jobs_timed_out = 0
        self.jobs_failed = 0
        self.renewals_ok = 0
        self.renewals_failed = 0
        self.ops_sent = 0
        expires = now + params.expiry
        entries: list[tuple[float, int]] = []
        for i, key in enumerate(lease_keys(params)):
            version = 1 if versions is None else int(versions.get(key, 1))
            renew_at = now + rng.uniform(0.0, params.renew_every)
            self._leases.append(_Lease(key, version, expires, renew_at))
            self._index[key] = i
            entries.append((renew_at, i))
        self._timers = _Timers(entries)
        self._live = len(self._leases)

    # -- queries ---------------------------------------------------------------------------

    @property
    def keys(self) -> list[str]:
        return [lease.key for lease in self._leases]

    def is_live(self, key: str) -> bool:
        """True while the fleet believes it holds ``key``."""
        return self._leases[self._index[key]].state in (_WAIT, _RENEWING)

    def believed_version(self, key: str) -> int:
        return self._leases[self._index[key]].version

    def next_wake(self) -> float:
        """The earliest time :meth:`poll` may have something new to do (inf if never)."""
        wake = INF
        if self._expiry_heap:
            wake = self._expiry_heap[0][0]
        if self._job_heap and self._job_heap[0][0] < wake:
            wake = self._job_heap[0][0]
        # A renewal falling due is news even with every slot busy: poll() then parks it in
        # the backlog and watches its expiry.
        run, heap = self._timers._run, self._timers._heap
        if run and run[0][0] < wake:
            wake = run[0][0]
        if heap and heap[0][0] < wake:
            wake = heap[0][0]
        if self._backlog and self._renewals_in_flight < self._limit:
            wake = min(wake, self._now)
        if self._offered:
            manager_wake = self.manager.next_wake(self._now)
            if manager_wake < wake:
                wake = manager_wake
        return wake

    def stats(self) -> FleetStats:
        describe = self.manager.describe()
        total = len(self._leases)
        return FleetStats(
            believed_live=self._live, expired=total - self._live,
            queued=self.manager.queued(), in_flight_ops=len(self._ops),
            jobs_started=self.jobs_started, jobs_ok=self.jobs_ok,
            jobs_timed_out=self.jobs_timed_out, jobs_failed=self.jobs_failed,
            jobs_shed=int(describe.get("shed", 0)), renewals_ok=self.renewals_ok,
            renewals_failed=self.renewals_failed, ops_sent=self.ops_sent,
            total=total, jobs_in_flight=self._jobs_in_flight)

    # -- driving ---------------------------------------------------------------------------

    def poll(self, now: float) -> list[Op]:
        """Everything due at ``now``: timed-out jobs, expiries, renewals, new jobs."""
        if now > self._now:
            self._now = now
        out: list[Op] = []
        if self._job_heap or self._expiry_heap:
            self._expire(now)
        self._send_renewals(now, out)
        if self._offered:
            self._start_jobs(now, out)
        return out

    def complete(self, result: Result, now: float) -> list[Op]:
        """Take the answer to one op; return the ops to send now because of it.

        Deadlines that passed by ``now`` are applied first: an answer arriving at or after
        its job's deadline (or its lease's expiry) is too late.
        """
        if now > self._now:
            self._now = now
        if self._job_heap or self._expiry_heap:
            self._expire(now)
        entry = self._ops.pop(result.op_id, None)
        out: list[Op] = []
        if entry is not None:
            index, job_id, writes = entry
            if job_id == _NO_JOB:
                self._renewed(index, result, now, writes)
            else:
                self._job_step(index, job_id, result, now, writes, out)
        self._send_renewals(now, out)
        if self._offered:
            self._start_jobs(now, out)
        return out

    def _expire(self, now: float) -> None:
        if self._job_heap and self._job_heap[0][0] <= now:
            self._expire_jobs(now)
        if self._expiry_heap and self._expiry_heap[0][0] <= now:
            self._expire_leases(now)

    # -- renewals --------------------------------------------------------------------------

    def _watch_expiry(self, index: int, lease: _Lease) -> None:
        heapq.heappush(self._expiry_heap, (lease.expires_at, index))

    def _send_renewals(self, now: float, out: list[Op]) -> None:
        timers = self._timers
        run, heap = timers._run, timers._heap
        backlog = self._backlog
        if not backlog and (not run or run[0][0] > now) and (not heap or heap[0][0] > now):
            return  # nothing due (the common case, checked inline: this runs per event)
        params = self.params
        limit = params.renew_concurrency
        leases = self._leases
        while self._renewals_in_flight < limit:
            if backlog:
                renew_at, index = backlog.popleft()
            elif timers.first() <= now:
                renew_at, index = timers.pop()
            else:
                return
            lease = leases[index]
            if lease.state != _WAIT or lease.renew_at != renew_at:
                continue  # stale entry
            if now >= lease.expires_at:
                self._lose(index, lease, now)
                continue
            op = self._op(_RENEW, lease.key, lease.version, now + params.expiry, now,
                          params.renew_timeout)
            lease.state = _RENEWING
            lease.op_id = op.id
            self._ops[op.id] = (index, _NO_JOB, op.expires_at)
            self._renewals_in_flight += 1
            if now + params.renew_timeout >= lease.expires_at:
                self._watch_expiry(index, lease)  # the answer may come too late
            out.append(op)
        self._park_due(now)

    def _park_due(self, now: float) -> None:
        # All slots busy: due renewals wait, in order, and their expiry is watched.
        timers = self._timers
        leases = self._leases
        while timers.first() <= now:
            renew_at, index = timers.pop()
            lease = leases[index]
            if lease.state == _WAIT and lease.renew_at == renew_at:
                self._backlog.append((renew_at, index))
                self._watch_expiry(index, lease)

    def _renewed(self, index: int, result: Result, now: float, writes: float) -> None:
        self._renewals_in_flight -= 1
        lease = self._leases[index]
        ok = result.outcome is _OK
        if ok:
            self.renewals_ok += 1
        else:
            self.renewals_failed += 1
        if lease.state != _RENEWING or lease.op_id != result.op_id:
            return  # the lease expired meanwhile: the manager has it now
        lease.op_id = -1
        if ok:
            lease.version += 1
            self._set_live(index, lease, writes)
        elif result.outcome is _CONDITION_FAILED or now >= lease.expires_at:
            self._lose(index, lease, now)
        else:
            lease.state = _WAIT
            retry_at = now + self.params.renew_retry
            if retry_at < lease.expires_at:
                lease.renew_at = retry_at
                self._timers.push(retry_at, index)
            else:
                lease.renew_at = INF  # no retry before it expires
                self._watch_expiry(index, lease)

    def _set_live(self, index: int, lease: _Lease, expires_at: float) -> None:
        # The write was made at ``expires_at - expiry`` (the op's ``now``): the next
        # renewal counts from there, as a real client's would; it is due before the
        # expiry (expiry > renew_every), so no expiry watch is needed yet.
        if lease.state not in (_WAIT, _RENEWING):
            self._live += 1
        lease.state = _WAIT
        lease.expires_at = expires_at
        lease.renew_at = expires_at - self.params.expiry + self.params.renew_every
        self._timers.push(lease.renew_at, index)

    def _expire_leases(self, now: float) -> None:
        heap = self._expiry_heap
        leases = self._leases
        while heap and heap[0][0] <= now:
            expires_at, index = heapq.heappop(heap)
            lease = leases[index]
            if lease.state in (_WAIT, _RENEWING) and lease.expires_at == expires_at:
                self._lose(index, lease, now)

    def _lose(self, index: int, lease: _Lease, now: float) -> None:
        """Expired or lost: hand the key to the manager (an in-flight renewal is abandoned)."""
        if lease.state in (_WAIT, _RENEWING):
            self._live -= 1
        if lease.state != _OFFERED:
            self._offered += 1
        lease.state = _OFFERED
        lease.op_id = -1
        self.manager.offer(lease.key, now)

    # -- jobs ------------------------------------------------------------------------------

    def _start_jobs(self, now: float, out: list[Op]) -> None:
        manager = self.manager
        index_of = self._index
        leases = self._leases
        while True:
            key = manager.take(now, self._jobs_in_flight)
            if key is None:
                return
            index = index_of.get(key)
            if index is None or leases[index].state != _OFFERED:
                continue  # not ours to re-establish (a manager bug): never two jobs per key
            lease = leases[index]
            job_id = self._next_job
            self._next_job += 1
            self._offered -= 1
            lease.state = _JOB
            lease.job_id = job_id
            lease.job_deadline = now + self.params.job_timeout
            lease.job_reads = 0
            lease.job_version = lease.version
            self._jobs_in_flight += 1
            self.jobs_started += 1
            heapq.heappush(self._job_heap, (lease.job_deadline, job_id, index))
            self._job_next_op(index, lease, now, out)

    def _job_next_op(self, index: int, lease: _Lease, now: float, out: list[Op]) -> None:
        left = lease.job_deadline - now
        if left <= 0:
            self._end_job(lease, now, "timeout")
            return
        if lease.job_reads < self.params.work_reads:
            op = self._op(_READ, lease.key, lease.job_version, 0.0, now, left)
        else:
            op = self._op(_ACQUIRE, lease.key, lease.job_version, now + self.params.expiry,
                          now, left)
        lease.op_id = op.id
        self._ops[op.id] = (index, lease.job_id, op.expires_at)
        out.append(op)

    def _job_step(self, index: int, job_id: int, result: Result, now: float, writes: float,
                  out: list[Op]) -> None:
        lease = self._leases[index]
        if lease.state != _JOB or lease.job_id != job_id or lease.op_id != result.op_id:
            return  # the job is over (timed out): a late answer changes nothing
        lease.op_id = -1
        if now >= lease.job_deadline or result.outcome is _TIMEOUT:
            self._end_job(lease, now, "timeout")
            return
        if result.outcome is _ERROR:
            self._end_job(lease, now, "error")
            return
        if lease.job_reads < self.params.work_reads:  # a read came back
            item = result.item
            if item is None:
                lease.job_version = 0
            elif item.owner != self.owner and item.expires_at > now:
                self._end_job(lease, now, "held")
                return
            else:
                lease.job_version = item.version
            lease.job_reads += 1
            self._job_next_op(index, lease, now, out)
            return
        if result.outcome is _CONDITION_FAILED:
            self._end_job(lease, now, "condition")
            return
        # Acquired: live again from the write's time, renewals resume.
        lease.version = lease.job_version + 1
        lease.job_id = _NO_JOB
        self._jobs_in_flight -= 1
        self.jobs_ok += 1
        self._set_live(index, lease, writes)
        self.manager.job_done(lease.key, now)

    def _expire_jobs(self, now: float) -> None:
        heap = self._job_heap
        leases = self._leases
        while heap and heap[0][0] <= now:
            _, job_id, index = heapq.heappop(heap)
            lease = leases[index]
            if lease.state == _JOB and lease.job_id == job_id:
                self._end_job(lease, now, "timeout")

    def _end_job(self, lease: _Lease, now: float, reason: str) -> None:
        self._offered += 1
        lease.state = _OFFERED
        lease.job_id = _NO_JOB
        lease.op_id = -1
        self._jobs_in_flight -= 1
        if reason == "timeout":
            self.jobs_timed_out += 1
        else:
            self.jobs_failed += 1
        self.manager.job_failed(lease.key, now, reason)

    # -- helpers ---------------------------------------------------------------------------

    def _op(self, kind: Kind, key: str, version: int, expires_at: float, now: float,
            timeout: float) -> Op:
        op = Op(self._next_op, kind, key, self.owner, version, expires_at, now, timeout)
        self._next_op += 1
        self.ops_sent += 1
        return op

