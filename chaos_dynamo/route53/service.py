"""Route 53 with AWS's change semantics, in front of an emulator.

A change batch is validated as a whole against the zone's current records and applied
all-or-nothing under a per-zone lock; the emulator is then made to hold exactly the result.
Each accepted batch gets a unique change id that reads PENDING until the propagation delay
has passed and the lab DNS answers from the new records, then INSYNC.

HTTP parsing lives in ``xmlcodec``; the rules in ``rules``; the emulator adapter in
``backend``. This module only coordinates them.

Health checks: the emulator stores them (moto reports "Success" for ever), the lab checks
and evaluates them. :class:`HealthCheckService` holds the configurations the lab
evaluates: the emulator's, read again after every change made through the lab, with
CreateHealthCheck / UpdateHealthCheck checked first by the lab's rules
(:func:`~chaos_dynamo.route53.healthchecks.check_config`). A change batch naming a health
check the lab does not know is refused (``NoSuchHealthCheck``), as Route 53 does.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.errors import AwsError, LabError
from chaos_dynamo.route53.backend import Route53Backend
from chaos_dynamo.route53.healthchecks import (
    HealthCheckConfig,
    HealthEvaluator,
    check_config,
    config_from_api,
)
from chaos_dynamo.route53.records import (
    RecordKey,
    RecordSet,
    ZoneSnapshot,
    index_records,
    strip_zone_prefix,
)
from chaos_dynamo.route53.rules import Change, apply_changes
from chaos_dynamo.route53.xmlcodec import Observation

Publish = Callable[[ZoneSnapshot], None]
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@dataclass(frozen=True)
class ChangeRecord:
    """One accepted change batch, kept for GetChange and for probes of change history."""

    change_id: str
    zone_id: str
    zone_name: str
    submitted_at: float
    comment: str | None
    changes: tuple[tuple[str, str, str, str | None], ...]  # (action, name, type, set id)


class Route53Service:
    """Applies change batches with AWS semantics and feeds the lab DNS.

    Args:
        backend: where records are stored (the emulator).
        publish: called with a zone's new records once a change has propagated.
        propagation_delay: seconds from an accepted batch to DNS answering from it.
        seed: makes change ids reproducible.
        health_check_known: whether a health check id exists; a CREATE or UPSERT naming
            one that does not is refused with NoSuchHealthCheck. By default every id exists.
    """

    def __init__(
        self,
        backend: Route53Backend,
        publish: Publish,
        *,
        remove: Callable[[str], None] | None = None,
        sole_writer: bool = False,
        propagation_delay: float = 0.2,
        seed: int = 0,
        clock: Clock = REAL_CLOCK,
        history_limit: int = 100_000,
        health_check_known: Callable[[str], bool] = lambda check_id: True,
    ) -> None:
        self.backend = backend
        self._health_check_known = health_check_known
        self._publish_to_dns = publish
        self._remove_from_dns = remove
        self._published: dict[str, tuple[RecordSet, ...]] = {}
        # With sole_writer (the embedded emulator: only this service changes its records),
        # the records each zone was last converged on are known and need no re-reading.
        self._sole_writer = sole_writer
        self._known: dict[str, dict[RecordKey, RecordSet]] = {}
        self._history_limit = history_limit
        self.propagation_delay = propagation_delay
        self._clock = clock
        self._rng = random.Random(seed)
        self._counter = itertools.count(1)
        self._zone_names: dict[str, str] = {}
        self._zone_locks: dict[str, threading.Lock] = {}
        self._registry_lock = threading.Lock()
        self._changes: dict[str, ChangeRecord] = {}
        self._insync: set[str] = set()
        self.history: deque[ChangeRecord] = deque(maxlen=history_limit)
        self.counters: dict[str, int] = {
            "accepted": 0, "rejected": 0, "published": 0, "publish_errors": 0, "emulator_errors": 0,
        }
        self._counter_lock = threading.Lock()
        # Pending publications: (due monotonic time, sequence, zone id, snapshot, change id).
        self._pending: list[tuple[float, int, str, ZoneSnapshot, str]] = []
        self._pending_zones: dict[str, int] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._propagate, name="route53-propagator", daemon=True)
        self._thread.start()

    # --- zones ------------------------------------------------------------------------
    def refresh_zones(self) -> dict[str, str]:
        """Re-read the hosted zones from the emulator; return {zone id: zone name}."""
        zones = dict(self.backend.list_zones())
        with self._registry_lock:
            self._zone_names = zones
            for zone_id in zones:
                self._zone_locks.setdefault(zone_id, threading.Lock())
        return dict(zones)

    def zone_name(self, zone_id: str) -> str:
        zone_id = strip_zone_prefix(zone_id)
        with self._registry_lock:
            name = self._zone_names.get(zone_id)
        if name is None:
            name = self.refresh_zones().get(zone_id)
        if name is None:
            raise AwsError("NoSuchHostedZone", f"No hosted zone found with ID: {zone_id}")
        return name

    def _lock(self, zone_id: str) -> threading.Lock:
        with self._registry_lock:
            return self._zone_locks.setdefault(zone_id, threading.Lock())

    def resync(self) -> int:
        """Publish zones as the emulator holds them, except zones with changes in flight.

        Picks up zones and records written to the emulator directly (for example by a
        LocalStack init hook) and forgets zones deleted there. A zone whose records did not
        change is not republished, so the DNS keeps its answer cache. Returns the number of
        zones published.
        """
        zones = self.refresh_zones()
        published = 0
        for zone_id, name in sorted(zones.items()):
            with self._lock(zone_id):
                with self._cond:
                    if self._pending_zones.get(zone_id):
                        continue
                records = _ordered(index_records(self.backend.list_records(zone_id)))
                if self._published.get(zone_id) == records:
                    continue
                if self._publish(ZoneSnapshot(zone_id, name, records)):
                    published += 1
        self._forget_deleted(zones)
        return published

    def sync_zones(self) -> int:
        """After a zone was created or deleted: publish new zones, forget deleted ones.

        Cheaper than :meth:`resync`: zones already published are not read again.
        """
        zones = self.refresh_zones()
        published = 0
        for zone_id, name in sorted(zones.items()):
            if zone_id in self._published:
                continue
            with self._lock(zone_id):
                records = _ordered(index_records(self.backend.list_records(zone_id)))
                if self._publish(ZoneSnapshot(zone_id, name, records)):
                    published += 1
        self._forget_deleted(zones)
        return published

    def _forget_deleted(self, zones: dict[str, str]) -> None:
        for zone_id in sorted(set(self._published) - set(zones)):
            with self._lock(zone_id):
                self._published.pop(zone_id, None)
                self._known.pop(zone_id, None)
                if self._remove_from_dns is not None:
                    self._remove_from_dns(zone_id)

    def _publish(self, snapshot: ZoneSnapshot) -> bool:
        """Hand a snapshot to the DNS; a failure is counted, never fatal to the caller."""
        try:
            self._publish_to_dns(snapshot)
        except Exception:  # noqa: BLE001 - counted and visible in lab status
            self._count("publish_errors")
            return False
        self._published[snapshot.zone_id] = snapshot.records
        return True

    def _count(self, key: str) -> None:
        with self._counter_lock:
            self.counters[key] += 1

    # --- changes ----------------------------------------------------------------------
    def change(self, zone_id: str, changes: list[Change], comment: str | None = None) -> ChangeRecord:
        """Apply one change batch all-or-nothing.

        Raises:
            InvalidChangeBatch: a change broke Route 53's rules; nothing was applied.
            AwsError: InvalidInput, NoSuchHostedZone, NoSuchHealthCheck (a CREATE or
                UPSERT names a health check that does not exist), or an emulator error.
        """
        zone_id = strip_zone_prefix(zone_id)
        zone_name = self.zone_name(zone_id)
        self._check_health_checks(changes)
        with self._lock(zone_id):
            known = self._known.get(zone_id) if self._sole_writer else None
            current = dict(known) if known is not None else index_records(self.backend.list_records(zone_id))
            try:
                target = apply_changes(zone_name, current, changes, zone_id=zone_id)
            except AwsError:
                self._count("rejected")
                raise
            self._write(zone_id, current, target, assumed=known is not None)
            record = ChangeRecord(
                change_id=self._new_change_id(),
                zone_id=zone_id,
                zone_name=zone_name,
                submitted_at=self._clock.now(),
                comment=comment,
                changes=tuple(
                    (c.action, c.record.name, c.record.type, c.record.set_identifier) for c in changes
                ),
            )
            self._remember(record)
            self._count("accepted")
            self._schedule(zone_id, ZoneSnapshot(zone_id, zone_name, _ordered(target)), record.change_id)
        return record

    def _check_health_checks(self, changes: list[Change]) -> None:
        """Refuse the batch if a record it creates names an unknown health check.

        A DELETE may name one: a record must stay deletable after its health check went.
        """
        for change in changes:
            check_id = change.record.health_check_id
            if change.action != "DELETE" and check_id is not None and not self._health_check_known(check_id):
                self._count("rejected")
                raise AwsError("NoSuchHealthCheck", f"No health check exists with the specified ID {check_id}")

    def _write(self, zone_id: str, current: dict[RecordKey, RecordSet],
               target: dict[RecordKey, RecordSet], assumed: bool = False) -> None:
        """Make the emulator hold ``target``; on failure put ``current`` back and raise LabError."""
        try:
            self.backend.converge(zone_id, target, assumed=current if assumed else None)
        except Exception as exc:
            self._count("emulator_errors")
            self._known.pop(zone_id, None)
            try:
                self.backend.converge(zone_id, current)
                undone = "the batch was rolled back"
            except Exception:  # noqa: BLE001 - the original failure is what the caller needs
                undone = "rolling it back failed too; restart the lab"
            raise LabError(f"the emulator at {self.backend.endpoint_url} failed while applying a "
                           f"change to zone {zone_id} ({type(exc).__name__}: {exc}); {undone}") from exc
        if self._sole_writer:
            self._known[zone_id] = dict(target)

    def _remember(self, record: ChangeRecord) -> None:
        """Keep the change for GetChange; the oldest are forgotten past the history limit."""
        if len(self.history) == self.history.maxlen:
            forgotten = self.history[0]
            self._changes.pop(forgotten.change_id, None)
            with self._cond:
                self._insync.discard(forgotten.change_id)
        self._changes[record.change_id] = record
        self.history.append(record)

    def change_status(self, change_id: str) -> ChangeRecord | None:
        """The change with this id, or None when the lab did not issue it."""
        return self._changes.get(strip_zone_prefix(change_id))

    def is_insync(self, change_id: str) -> bool:
        with self._cond:
            return strip_zone_prefix(change_id) in self._insync

    def wait_insync(self, change_id: str, timeout: float) -> bool:
        """Block until the change is INSYNC (DNS answers from it) or ``timeout`` passes."""
        with self._cond:
            return self._cond.wait_for(lambda: strip_zone_prefix(change_id) in self._insync, timeout)

    def _new_change_id(self) -> str:
        suffix = "".join(self._rng.choice(_ID_ALPHABET) for _ in range(8))
        return f"C{next(self._counter):05d}{suffix}"

    # --- propagation ------------------------------------------------------------------
    def _schedule(self, zone_id: str, snapshot: ZoneSnapshot, change_id: str) -> None:
        due = self._clock.monotonic() + self.propagation_delay
        with self._cond:
            heapq.heappush(self._pending, (due, next(self._counter), zone_id, snapshot, change_id))
            self._pending_zones[zone_id] = self._pending_zones.get(zone_id, 0) + 1
            self._cond.notify_all()

    def _propagate(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    if self._pending:
                        wait = self._pending[0][0] - self._clock.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(timeout=wait)
                    else:
                        self._cond.wait()
                if self._stopping:
                    return
                _, _, zone_id, snapshot, change_id = heapq.heappop(self._pending)
            # Publish outside the condition so DNS work never blocks new batches.
            ok = self._publish(snapshot)
            with self._cond:
                if ok:
                    self._insync.add(change_id)
                self._pending_zones[zone_id] -= 1
                self._cond.notify_all()
            if ok:
                self._count("published")

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def describe(self, record: ChangeRecord) -> dict[str, Any]:
        """A ChangeInfo dictionary as boto3 returns it."""
        return {
            "Id": f"/change/{record.change_id}",
            "Status": "INSYNC" if self.is_insync(record.change_id) else "PENDING",
            "SubmittedAt": datetime.fromtimestamp(record.submitted_at, tz=UTC),
            "Comment": record.comment,
        }


def _ordered(records: dict[RecordKey, RecordSet]) -> tuple[RecordSet, ...]:
    return tuple(records[k] for k in sorted(records, key=lambda k: (k[0], k[1], k[2] or "")))


# --- health checks ------------------------------------------------------------------------

UPDATABLE_FIELDS = frozenset({
    "IPAddress", "Port", "ResourcePath", "FullyQualifiedDomainName", "SearchString", "FailureThreshold",
    "Inverted", "Disabled", "HealthThreshold", "ChildHealthChecks", "EnableSNI", "Regions",
    "AlarmIdentifier", "InsufficientDataHealthStatus",
})
"""The HealthCheckConfig fields UpdateHealthCheck can set (Type and RequestInterval cannot change)."""
RESETTABLE_ELEMENTS = ("FullyQualifiedDomainName", "Regions", "ResourcePath", "ChildHealthChecks")
"""What UpdateHealthCheck's ResetElements can put back to its default."""
HEALTH_ROUTE = "/_chaos_dynamo/route53/health"
"""The lab's control route showing every health check's status, calculated ones included."""


def list_health_checks(client: Any) -> list[dict[str, Any]]:
    """Every health check a Route 53 API holds, as boto3 returns them (``Id``,
    ``CallerReference``, ``HealthCheckConfig``...), following pagination."""
    checks: list[dict[str, Any]] = []
    try:
        for page in client.get_paginator("list_health_checks").paginate():
            checks.extend(page.get("HealthChecks", []))
    except Exception as exc:
        raise AwsError.from_client_error(exc, "ListHealthChecks") from exc
    return checks


class HealthCheckService:
    """The health checks the lab evaluates, and the rules their API calls must follow.

    Args:
        list_checks: reads the emulator's health checks (:func:`list_health_checks`).
        configure: receives the configurations after every refresh (the lab's runner).
        evaluator: the checks' state, for GetHealthCheckStatus and
            GetHealthCheckLastFailureReason.
        checker_address: the checkers' source address, reported in every observation.

    The emulator is the store; the lab keeps, per id, the configuration an
    UpdateHealthCheck through the lab asked for, because moto's update drops ``Regions``
    and ``ChildHealthChecks`` left out of the request and ignores ``ResetElements``.
    """

    def __init__(self, list_checks: Callable[[], list[dict[str, Any]]],
                 configure: Callable[[list[HealthCheckConfig]], object] = lambda configs: None, *,
                 evaluator: HealthEvaluator | None = None, checker_address: str = "127.0.0.1") -> None:
        self._list_checks = list_checks
        self.configure = configure
        self.evaluator = evaluator if evaluator is not None else HealthEvaluator()
        self.checker_address = checker_address
        self._lock = threading.Lock()  # one refresh at a time, so configurations arrive in order
        self._raw: dict[str, dict[str, Any]] = {}  # id -> API HealthCheckConfig the lab evaluates
        self._updated: dict[str, dict[str, Any]] = {}
        self._configs: dict[str, HealthCheckConfig] = {}
        self.counters = {"refreshes": 0, "refresh_errors": 0, "refused": 0}

    def refresh(self) -> list[HealthCheckConfig]:
        """Re-read the emulator's health checks and hand them to ``configure``.

        A check the lab cannot evaluate (stored on the emulator behind the lab's back,
        e.g. HTTPS, CLOUDWATCH_METRIC or a public IPAddress: see
        :func:`~chaos_dynamo.route53.healthchecks.not_evaluated_reason`) is still listed,
        so records may name it, but it gets no checkers and stays healthy; the lab's
        health route shows it as not evaluated, with the reason. On an emulator error the
        previous configurations stay.

        Raises:
            AwsError: the emulator failed to list its health checks.
        """
        with self._lock:
            try:
                listed = self._list_checks()
            except Exception:
                self.counters["refresh_errors"] += 1
                raise
            self.counters["refreshes"] += 1
            raw: dict[str, dict[str, Any]] = {}
            configs: dict[str, HealthCheckConfig] = {}
            for item in listed:
                check_id = str(item.get("Id", ""))
                api = dict(self._updated.get(check_id) or item.get("HealthCheckConfig") or {})
                try:
                    config = config_from_api(check_id, api, str(item.get("CallerReference", "")))
                except AwsError:
                    continue  # not even typed right: nothing the lab can check
                raw[check_id], configs[check_id] = api, config
            self._updated = {k: v for k, v in self._updated.items() if k in raw}
            self._raw, self._configs = raw, configs
            self.configure(list(configs.values()))
            return list(configs.values())

    def known(self, check_id: str) -> bool:
        """Whether the health check exists; an id not seen yet is looked up once more."""
        with self._lock:
            if check_id in self._configs:
                return True
        try:
            self.refresh()
        except AwsError:
            return False
        with self._lock:
            return check_id in self._configs

    def ids(self) -> set[str]:
        with self._lock:
            return set(self._configs)

    def config(self, check_id: str) -> HealthCheckConfig | None:
        with self._lock:
            return self._configs.get(check_id)

    def configs(self) -> list[HealthCheckConfig]:
        with self._lock:
            return list(self._configs.values())

    def check_create(self, caller_reference: str, config: Mapping[str, Any]) -> HealthCheckConfig:
        """Apply CreateHealthCheck's rules (AWS's and the lab's) before the emulator sees it.

        Raises:
            AwsError: ``InvalidInput`` naming the field and the fix.
        """
        try:
            checked = config_from_api("(new)", config, caller_reference)
            check_config(checked, self.ids())
        except AwsError:
            self._refused()
            raise
        return checked

    def check_update(self, check_id: str, update: Mapping[str, Any]) -> dict[str, Any] | None:
        """The configuration UpdateHealthCheck would leave, checked by the rules.

        Returns None for an id the lab does not know (the emulator answers
        NoSuchHealthCheck); otherwise the merged API ``HealthCheckConfig``, to hand to
        :meth:`updated` once the emulator took the update.

        Raises:
            AwsError: ``InvalidInput`` naming the field and the fix.
        """
        if not self.known(check_id):
            return None
        with self._lock:
            merged = dict(self._raw.get(check_id, {}))
            known_ids = set(self._configs)
        reset = update.get("ResetElements") or []
        for element in reset:
            if element not in RESETTABLE_ELEMENTS:
                self._refused()
                raise AwsError("InvalidInput", f"Invalid parameter: ResetElements names {element!r}; "
                                               f"use some of {list(RESETTABLE_ELEMENTS)}")
            merged.pop(element, None)
        merged.update({k: v for k, v in update.items() if k in UPDATABLE_FIELDS})
        try:
            check_config(config_from_api(check_id, merged), known_ids)
        except AwsError:
            self._refused()
            raise
        return merged

    def updated(self, check_id: str, merged: Mapping[str, Any]) -> None:
        """The emulator took an UpdateHealthCheck: evaluate ``merged`` from now on."""
        with self._lock:
            self._updated[check_id] = dict(merged)
        self.refresh()

    def _refused(self) -> None:
        with self._lock:
            self.counters["refused"] += 1

    def reports(self, check_id: str, failures: bool = False) -> list[Observation] | None:
        """Each checker region's latest result (``failures``: latest failure), as
        GetHealthCheckStatus (GetHealthCheckLastFailureReason) reports them; None for
        an id that does not exist.

        A disabled check has no checkers running: it reports the results its checkers had
        when it was disabled (none for a check created disabled), until it is enabled
        again and its checkers start afresh.

        Raises:
            AwsError: ``InvalidInput`` for a CALCULATED check: AWS documents that neither
                call can be used for a calculated health check (its status is shown in the
                Route 53 and CloudWatch consoles; the lab shows it at
                ``GET /_chaos_dynamo/route53/health``).
        """
        if not self.known(check_id):
            return None
        config = self.config(check_id)
        if config is not None and config.calculated:
            operation = "GetHealthCheckLastFailureReason" if failures else "GetHealthCheckStatus"
            raise AwsError("InvalidInput", (
                f"Invalid parameter: health check {check_id} is a calculated health check, and "
                f"{operation} can't be used for calculated health checks; read its status from "
                f"the lab at GET {HEALTH_ROUTE} (its \"healthy\" field), or call {operation} "
                "for each of its ChildHealthChecks"))
        pairs = (self.evaluator.last_failures(check_id) if failures
                 else self.evaluator.observations(check_id))
        return [Observation(region, self.checker_address, result.status,
                            datetime.fromtimestamp(result.checked_at, tz=UTC))
                for region, result in pairs]


def describe_target(config: HealthCheckConfig) -> str:
    """What a health check looks at, in one line: a URL, host:port, or its children."""
    if config.calculated:
        threshold = config.health_threshold if config.health_threshold is not None else len(config.children)
        return f"calculated: at least {threshold} of [{', '.join(config.children)}] healthy"
    host = config.ip_address or config.fqdn or "?"
    if ":" in host:
        host = f"[{host}]"
    if config.type == "TCP":
        return f"tcp://{host}:{config.effective_port}"
    return f"http://{host}:{config.effective_port}{config.resource_path}"
