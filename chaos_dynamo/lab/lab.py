"""The lab: a local stand-in for an AWS region, assembled from its parts.

::

    service --DNS--> LabDNS (127.0.0.1:D) <--snapshots-- Route53Service <-- LabFront (AWS_ENDPOINT_URL)
       |                                                      |                  |
       +--HTTP--> LBFleet (127.0.0.11.., port L) --> emulator (moto, or --backend URL)

``Lab.start()`` brings everything up on loopback, creates the topology (hosted zones, the
plan table, the first plan) through the lab's own Route 53 front, and waits until the lab
DNS answers the endpoint.

Every zone the DNS publishes goes through the lab, which keeps the *availability
timeline*: how many addresses each endpoint's name resolves to, one entry per change,
stamped with the lab clock at the moment the DNS switches to the new answers, and the
*answer timeline* (:mod:`chaos_dynamo.lab.answers`): the addresses and failover roles of
every name the DNS serves, with what changed them.

A lab may have *namespaces* (``[[namespaces]]`` in the topology, ``lab up --namespaces``):
each gets its own hosted zone, endpoint, plan table (``<prefix>chaos-dynamo-plans``) and
load balancers, and a plan 1 that points its endpoint at those load balancers only. The
lab's own endpoints are served by the load balancers no namespace owns. ``info()`` lists
the lab's own parts at the top and each namespace's under ``namespaces``; the status and
the logs cover the whole lab (docs/namespaces.md).

Route 53 health checks are evaluated for real: the emulator stores them, the lab's
checkers (:mod:`chaos_dynamo.route53.checkers`) probe their targets on loopback,
``health_check_speedup`` times faster than AWS's clock, and the DNS answers by each
record's health as Route 53 does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.config import EndpointSpec, LBSpec, Topology, check_loopback, validate
from chaos_dynamo.control import routes as control_routes
from chaos_dynamo.control.enactor import Endpoint, initial_records
from chaos_dynamo.control.runtime import ControlPlane
from chaos_dynamo.dns.server import LabDNS
from chaos_dynamo.errors import AwsError, ConfigError, LabError, SafetyError
from chaos_dynamo.lab import metrics
from chaos_dynamo.lab.answers import AnswerTimeline, timeline_name
from chaos_dynamo.lab.front import LabFront
from chaos_dynamo.lab.state import EndpointInfo, LabInfo, NamespaceInfo
from chaos_dynamo.lbfleet._capacity import check_service_time, check_slots
from chaos_dynamo.lbfleet._validate import intermittent_from_json
from chaos_dynamo.lbfleet.proxy import ERROR_CODES, LBFleet
from chaos_dynamo.plans import plan_from_fleet, upsert_changes
from chaos_dynamo.planstore import PlanStore
from chaos_dynamo.route53.backend import Route53Backend, make_client
from chaos_dynamo.route53.checkers import HealthCheckRunner, Prober, Transition
from chaos_dynamo.route53.healthchecks import HealthEvaluator, not_evaluated_reason
from chaos_dynamo.route53.records import ZoneSnapshot, normalize_name
from chaos_dynamo.route53.rules import change_from_api
from chaos_dynamo.route53.service import (
    HealthCheckService,
    Route53Service,
    describe_target,
    list_health_checks,
)

READY_TIMEOUT = 30.0


class AvailabilityTimeline:
    """How many addresses each endpoint resolves to, over time: an entry only on change.

    Entries are ``{"time", "endpoint", "addresses"}`` in the order recorded. Thread-safe;
    pure (the caller supplies times and counts).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []
        self._last: dict[str, int] = {}

    def record(self, time: float, counts: Mapping[str, int]) -> list[dict[str, Any]]:
        """Append an entry for each endpoint whose count differs from its last (or that has
        none yet), in ``counts`` order; return the entries appended."""
        with self._lock:
            changed = [(name, count) for name, count in counts.items() if self._last.get(name) != count]
            self._last.update(changed)
            added = [{"time": time, "endpoint": name, "addresses": count} for name, count in changed]
            self._entries.extend(added)
        return [dict(entry) for entry in added]

    def entries(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Copies of the entries, all or one endpoint's, oldest first."""
        with self._lock:
            chosen = [e for e in self._entries if endpoint is None or e["endpoint"] == endpoint]
        return [dict(entry) for entry in chosen]


class Lab:
    """Starts, describes and stops one lab. Use as a context manager in tests."""

    def __init__(self, topology: Topology, *, clock: Clock = REAL_CLOCK) -> None:
        """Raises ConfigError for an invalid topology, before anything binds."""
        self.topology = validate(topology)
        self.clock = clock
        self._moto: Any = None
        self.emulator_url = ""
        self.dns: LabDNS | None = None
        self.fleet: LBFleet | None = None
        self.route53: Route53Service | None = None
        self.front: LabFront | None = None
        self.zone_ids: dict[str, str] = {}
        self.started_at = 0.0
        self._resync_stop = threading.Event()
        self._resync_thread: threading.Thread | None = None
        self.control_plane: ControlPlane | None = None
        # Held across a DNS publish and the count that follows it, so timeline entries are
        # in publish order and each count is of the table its entry is stamped with.
        self._publish_lock = threading.Lock()
        self._timeline: AvailabilityTimeline | None = None  # set once the topology is up
        self._answers: AnswerTimeline | None = None  # likewise
        self.health: HealthCheckService | None = None
        self.health_runner: HealthCheckRunner | None = None

    # --- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LabInfo:
        """Bring the lab up and create the topology; on any failure stop what was started."""
        self._timeline = None  # bootstrap publishes are not part of the timeline
        self._answers = None
        try:
            self._start_parts()
            self._bootstrap()
            self.control_plane = self._make_control_plane()
            self._start_health_checks()
        except BaseException:
            with contextlib.suppress(Exception):  # the start failure is the error to report
                self.stop()
            raise
        with self._publish_lock:  # the first entry per endpoint: the state the lab starts in
            self._timeline = AvailabilityTimeline()
            self._answers = AnswerTimeline()
            at = self.clock.now()
            self._note_availability(at)
            self._note_answers(at, "start")
        self.started_at = self.clock.now()
        # Only an external backend can be written behind the lab's back (init hooks, other
        # tools); the embedded moto is reached only through the lab, so it needs no polling,
        # which would otherwise cost the DNS tail latency under load.
        if self.topology.backend and self.topology.resync_interval > 0:
            self._resync_thread = threading.Thread(target=self._resync_loop, name="lab-resync", daemon=True)
            self._resync_thread.start()
        return self.info()

    def _start_parts(self) -> None:
        t = self.topology
        self.emulator_url = t.backend or self._start_moto()
        self.dns = LabDNS(t.host, t.dns_port, seed=t.seed, clock=self.clock)
        self.dns.start()
        evaluator = HealthEvaluator()
        # Checkers connect from the lab's own address, to loopback targets only, and
        # resolve names through the lab DNS's zones alone.
        self.health_runner = HealthCheckRunner(
            evaluator, Prober(self._resolve_for_checkers, source=t.host, clock=self.clock),
            on_change=self._on_health_change, speedup=t.health_check_speedup, clock=self.clock,
        )
        health_client = make_client("route53", self.emulator_url, t.region)
        self.health = HealthCheckService(lambda: list_health_checks(health_client), self.health_runner.configure,
                                         evaluator=evaluator, checker_address=t.host)
        self.route53 = Route53Service(
            Route53Backend(self.emulator_url, t.region),
            self._publish,
            remove=self._remove_zone,
            sole_writer=not t.backend,
            propagation_delay=t.propagation_delay,
            seed=t.seed,
            clock=self.clock,
            health_check_known=self.health.known,
        )
        self.fleet = LBFleet(
            [(lb.name, lb.address) for lb in t.load_balancers],
            self.emulator_url,
            port=t.lb_port,
            max_connection_age=t.max_connection_age,
            clock=self.clock,
        )
        self.fleet.start()
        self.front = LabFront(
            t.host, t.api_port, self.emulator_url, self.route53,
            control=self._control, metrics=self.metrics_text, on_zone_change=self._on_zone_change,
            health=self.health,
        )
        self.front.start()

    def _start_health_checks(self) -> None:
        """Read the health checks the emulator already holds (an external backend may) and
        start the checkers."""
        assert self.health is not None and self.health_runner is not None
        with contextlib.suppress(AwsError):  # a backend without health checks: none to run
            self.health.refresh()
        self.health_runner.start()

    def _make_control_plane(self) -> ControlPlane:
        """The DNS Planner and Enactors, idle until started; they reach the lab through its front."""
        assert self.front is not None
        t = self.topology
        endpoints = [Endpoint(ep.name, self.zone_ids[normalize_name(ep.zone)], ep.ipv6) for ep in t.endpoints]
        return ControlPlane(self.front.url, t.region, t.plan_table, endpoints,
                            plan_from_fleet(1, t.endpoints, t.default_load_balancers), record_ttl=t.record_ttl,
                            seed=t.seed, clock=self.clock,
                            zone_order=[self.zone_ids[normalize_name(z)] for z in t.zones])

    def _start_moto(self) -> str:
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request to stderr; the lab reports through its own counters.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        # ThreadedMotoServer binds all interfaces unless told; the lab binds loopback only.
        server = ThreadedMotoServer(ip_address=self.topology.host, port=0, verbose=False)
        server.start()
        self._moto = server
        host, port = server.get_host_and_port()
        return f"http://{host}:{port}"

    def stop(self) -> None:
        """Stop every part that was started; safe to call twice.

        A part that fails to stop does not keep the others running: each is stopped in
        turn and the first error is raised at the end.
        """
        self._resync_stop.set()
        errors: list[BaseException] = []

        def attempt(action: Callable[[], object]) -> None:
            try:
                action()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the rest
                errors.append(exc)

        # The health checkers first: a status change would publish to a stopping DNS.
        runner, self.health_runner = self.health_runner, None
        if runner is not None:
            attempt(runner.stop)
        # The control plane next: its threads talk to the front, which must still answer.
        plane, self.control_plane = self.control_plane, None
        if plane is not None:
            attempt(plane.stop)
        thread, self._resync_thread = self._resync_thread, None
        if thread is not None:
            attempt(lambda: thread.join(timeout=10))
        front, fleet, dns = self.front, self.fleet, self.dns
        self.front, self.fleet, self.dns = None, None, None
        for part in (front, fleet, dns):
            if part is not None:
                attempt(part.stop)
        route53, self.route53 = self.route53, None
        if route53 is not None:
            attempt(route53.close)
        moto, self._moto = self._moto, None
        if moto is not None:
            attempt(moto.stop)
        if errors:
            raise errors[0]

    # --- topology -----------------------------------------------------------------------
    def client(self, service: str) -> Any:
        """A boto3 client for the lab's AWS API (the front, not the LB fleet)."""
        assert self.front is not None, "start the lab first"
        return make_client(service, self.front.url, self.topology.region)

    def _bootstrap(self) -> None:
        """Create the topology, turning botocore's errors into ones that name the emulator."""
        url = self.emulator_url
        try:
            self._create_topology()
        except ClientError as exc:
            error = AwsError.from_client_error(exc)
            raise AwsError(error.code, f"{error.aws_message} (the emulator at {url} refused to "
                           "set up the lab's topology)", error.operation) from exc
        except BotoCoreError as exc:
            fix = ("check that the emulator runs there, or omit --backend to use the embedded moto"
                   if self.topology.backend else "the embedded moto server stopped answering")
            raise LabError(f"the emulator at {url} did not answer ({exc}); {fix}") from None

    def _create_topology(self) -> None:
        t = self.topology
        assert self.route53 is not None
        route53 = self.client("route53")
        existing = {name: zid for zid, name in self.route53.refresh_zones().items()}
        for zone in (*t.zones, *(ns.zone for ns in t.namespaces)):
            fqdn = normalize_name(zone)
            if fqdn not in existing:
                created = route53.create_hosted_zone(Name=zone, CallerReference=f"chaos-dynamo-{zone}")
                existing[fqdn] = created["HostedZone"]["Id"].rsplit("/", 1)[-1]
            self.zone_ids[fqdn] = existing[fqdn]
        self.route53.refresh_zones()
        self.route53.resync()

        # The lab's own endpoints, then each namespace's: a plan table of its own, whose
        # plan 1 sends its endpoint to its load balancers only.
        parts = [(t.plan_table, t.endpoints, t.default_load_balancers)]
        parts += [(t.plan_table_of(ns), (ns.endpoint_spec,), t.namespace_load_balancers(ns)) for ns in t.namespaces]
        last_change = None
        for table, endpoints, lbs in parts:
            store = PlanStore(self.client("dynamodb"), table)
            store.ensure_table()
            plan = store.newest()
            if plan is None:
                plan = plan_from_fleet(1, endpoints, lbs)
                store.put(plan)
            for ep in endpoints:
                zone_id = self.zone_ids[normalize_name(ep.zone)]
                records = initial_records(plan, Endpoint(ep.name, zone_id, ep.ipv6), t.record_ttl)
                last_change = self.route53.change(zone_id, [change_from_api(c) for c in upsert_changes(records)],
                                                  "chaos-dynamo lab: initial plan")
        if last_change is not None and not self.route53.wait_insync(
            last_change.change_id, READY_TIMEOUT + t.propagation_delay
        ):
            raise LabError("the lab DNS did not pick up the initial plan in time")

    # --- DNS publishing and the availability timeline ----------------------------------
    def _publish(self, snapshot: ZoneSnapshot) -> None:
        """Serve ``snapshot`` from the lab DNS and note what the endpoints now resolve to."""
        with self._publish_lock:
            dns = self._running_dns()
            # Stamped just before the switch: every answer from the new table is logged
            # at or after this time (the DNS stamps a query after reading the table).
            at = self.clock.now()
            dns.publish(snapshot)
            self._note_availability(at)
            self._note_answers(at, "change")

    def _remove_zone(self, zone_id: str) -> None:
        with self._publish_lock:
            dns = self._running_dns()
            at = self.clock.now()
            dns.remove_zone(zone_id)
            self._note_availability(at)
            self._note_answers(at, "change")

    def _on_health_change(self, statuses: dict[str, bool], transitions: list[Transition]) -> None:
        """A health check changed status: the DNS answers by the new statuses from now on."""
        with self._publish_lock:
            dns = self.dns
            if dns is None:
                return  # stopping
            at = self.clock.now()
            dns.set_health(statuses)
            self._note_answers(at, "health")

    def _resolve_for_checkers(self, name: str) -> list[str]:
        """The addresses a health check's FullyQualifiedDomainName can answer with, from the
        lab DNS's zones only (no other resolver: the checkers stay on loopback)."""
        dns = self.dns
        return [] if dns is None else sorted(dns.members(name).addresses)

    def _note_answers(self, at: float, cause: str) -> None:
        """Record what every served name answers (call with ``_publish_lock`` held)."""
        answers, dns = self._answers, self.dns
        if answers is None or dns is None:
            return  # still bootstrapping: start() records the state it ends in
        served = {}
        for name in dns.answer_names():
            members = dns.members(name)
            served[name] = (members.addresses, members.roles)
        answers.record(at, served, cause)

    def answers(self, name: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
        """The answer timeline (see :mod:`chaos_dynamo.lab.answers`): all names or one,
        oldest first; with ``since``, each name's entry in effect then comes first."""
        answers = self._answers
        return [] if answers is None else answers.entries(name, since)

    def changes(self, name: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
        """Accepted Route 53 change batches (all, or those touching ``name`` or a name below
        it, such as the pool an alias of ``name`` points at), oldest first."""
        if self.route53 is None:
            return []
        wanted = None if name is None else timeline_name(name)
        out = []
        for record in tuple(self.route53.history):
            if since is not None and record.submitted_at < since:
                continue
            names = [timeline_name(rname) for _, rname, _, _ in record.changes]
            if wanted is not None and not any(_at_or_below(n, wanted) for n in names):
                continue
            changes = [{"action": action, "name": rname, "type": rtype, "set_identifier": set_id}
                       for (action, _, rtype, set_id), rname in zip(record.changes, names, strict=True)]
            out.append({"time": record.submitted_at, "change_id": record.change_id, "zone_id": record.zone_id,
                        "comment": record.comment, "changes": changes})
        return out

    def health_checks(self) -> dict[str, Any]:
        """Every health check the lab knows, with its status and each checker's latest result.

        A check the lab cannot evaluate (stored on an external emulator behind the lab's
        back: a type the lab does not support, a target off loopback) is listed with
        ``"evaluated": false`` and ``"not_evaluated_reason"``; it has no checkers and counts
        as healthy. Evaluated checks have ``"evaluated": true, "not_evaluated_reason": null``.
        """
        health, runner = self.health, self.health_runner
        checks = []
        if health is not None:
            statuses = health.evaluator.statuses()
            for config in health.configs():
                not_evaluated = not_evaluated_reason(config)
                checks.append({
                    "id": config.id, "type": config.type, "target": describe_target(config),
                    "healthy": statuses.get(config.id, True),
                    "evaluated": not_evaluated is None, "not_evaluated_reason": not_evaluated,
                    "request_interval": config.request_interval,
                    "failure_threshold": config.failure_threshold, "inverted": config.inverted,
                    "disabled": config.disabled, "regions": list(config.regions),
                    "observations": [
                        {"region": region, "ok": result.ok, "status": result.status, "checked_at": result.checked_at}
                        for region, result in health.evaluator.observations(config.id)
                    ],
                })
        speedup = runner.speedup if runner is not None else self.topology.health_check_speedup
        return {"speedup": speedup, "checks": checks}

    def health_log(self, since: float | None = None) -> list[dict[str, Any]]:
        """Health-check status transitions, oldest first: ``{"time", "id", "healthy", "reason"}``."""
        runner = self.health_runner
        return [] if runner is None else runner.log(since)

    def _running_dns(self) -> LabDNS:
        if self.dns is None:
            raise LabError("the lab is stopping: its DNS is gone")
        return self.dns

    def _note_availability(self, at: float) -> None:
        """Record each endpoint's address count (call with ``_publish_lock`` held)."""
        timeline, dns = self._timeline, self.dns
        if timeline is None or dns is None:
            return  # still bootstrapping: start() records the state it ends in
        timeline.record(at, {ep.name: dns.addresses(ep.name) for ep in self.topology.all_endpoints})

    def availability(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """The availability timeline, all endpoints or one, oldest first.

        Each entry is ``{"time", "endpoint", "addresses"}``: from ``time`` (the lab clock,
        as in the DNS and LB logs) the endpoint's name resolves to ``addresses``
        addresses, counted as :meth:`LabDNS.addresses` counts them (A plus AAAA, every
        weighted member). The first entry per endpoint is the state at lab start; later
        ones are written only when the count changes, at the moment the DNS starts
        answering the new state.

        Raises:
            ConfigError: ``endpoint`` is not an endpoint of the lab.
        """
        name = None if endpoint is None else self._endpoint_name(endpoint)
        timeline = self._timeline
        return [] if timeline is None else timeline.entries(name)

    def _endpoint_name(self, endpoint: str) -> str:
        names = [ep.name for ep in self.topology.all_endpoints]
        wanted = endpoint.lower().rstrip(".") if isinstance(endpoint, str) else None
        if wanted not in names:
            raise ConfigError("endpoint", f"{endpoint!r} is not an endpoint of the lab", f"use one of {names}")
        return str(wanted)

    def _on_zone_change(self) -> None:
        if self.route53 is not None:
            self.route53.sync_zones()

    def _resync_loop(self) -> None:
        while not self._resync_stop.wait(self.topology.resync_interval):
            try:
                if self.route53 is not None:
                    self.route53.resync()
                if self.health is not None:  # health checks written behind the lab's back
                    self.health.refresh()
            except Exception:  # noqa: BLE001 - a failed resync is retried next interval
                continue

    # --- description --------------------------------------------------------------------
    def info(self) -> LabInfo:
        assert self.front is not None and self.dns is not None and self.fleet is not None
        t = self.topology
        dns_host, dns_port = self.dns.address
        namespace_zones = {normalize_name(ns.zone) for ns in t.namespaces}
        return LabInfo(
            pid=os.getpid(),
            api_url=self.front.url,
            dns_host=dns_host,
            dns_port=dns_port,
            lb_port=self.fleet.port,
            region=t.region,
            emulator_url=self.emulator_url,
            embedded=not t.backend,
            seed=t.seed,
            plan_table=t.plan_table,
            record_ttl=t.record_ttl,
            propagation_delay=t.propagation_delay,
            started_at=self.started_at,
            health_check_speedup=t.health_check_speedup,
            zones={name.rstrip("."): zid for name, zid in self.zone_ids.items() if name not in namespace_zones},
            endpoints=tuple(self._endpoint_info(ep) for ep in t.endpoints),
            load_balancers=tuple(_lb_json(lb) for lb in t.default_load_balancers),
            namespaces=tuple(
                NamespaceInfo(ns.name, ns.zone, self.zone_ids[normalize_name(ns.zone)],
                              (self._endpoint_info(ns.endpoint_spec),), ns.table_prefix, t.plan_table_of(ns),
                              tuple(_lb_json(lb) for lb in t.namespace_load_balancers(ns)))
                for ns in t.namespaces
            ),
        )

    def _endpoint_info(self, ep: EndpointSpec) -> EndpointInfo:
        return EndpointInfo(ep.name, ep.zone, self.zone_ids[normalize_name(ep.zone)], ep.ipv6)

    def status(self) -> dict[str, Any]:
        """Everything ``lab status --json`` shows: addresses and counters."""
        assert self.dns is not None and self.fleet is not None and self.route53 is not None
        info = self.info()
        return {
            "running": True,
            "lab": {
                "pid": info.pid, "api_url": info.api_url, "dns": f"{info.dns_host}:{info.dns_port}",
                "lb_port": info.lb_port, "region": info.region, "emulator_url": info.emulator_url,
                "embedded_emulator": info.embedded, "seed": info.seed,
                "propagation_delay": info.propagation_delay, "started_at": info.started_at,
            },
            "zones": info.zones,
            "endpoints": [ep.name for ep in info.endpoints],
            "load_balancers": {  # the whole fleet, namespaces' included
                lb.name: {**_lb_json(lb), "faults": self.fleet[lb.name].faults()}
                for lb in self.topology.load_balancers
            },
            **({"namespaces": {ns.name: {"zone": ns.zone, "endpoints": [ep.name for ep in ns.endpoints],
                                          "plan_table": ns.plan_table, "table_prefix": ns.table_prefix,
                                          "load_balancers": [lb["name"] for lb in ns.load_balancers]}
                               for ns in info.namespaces}} if info.namespaces else {}),
            "dynamodb": {"capacity": self.fleet.capacity.describe()},
            "health_checks": self._health_summary(),
            "control": self._control_summary(),
            "counters": {
                "dns": self.dns.counters(),
                "lb": self.fleet.counters(),
                "route53": dict(self.route53.counters),
            },
        }

    def _health_summary(self) -> dict[str, Any]:
        health, runner = self.health, self.health_runner
        if health is None or runner is None:
            return {}
        statuses = health.evaluator.statuses()
        not_evaluated = {config.id: reason for config in health.configs()
                         if (reason := not_evaluated_reason(config)) is not None}
        return {
            "speedup": runner.speedup,
            "total": len(statuses),
            "unhealthy": sorted(check for check, healthy in statuses.items() if not healthy),
            "not_evaluated": dict(sorted(not_evaluated.items())),
            "counters": {**runner.counters(), **health.counters},
        }

    def _control_summary(self) -> dict[str, Any]:
        plane = self.control_plane
        if plane is None:
            return {}
        status = plane.status()
        return {k: status[k] for k in ("mode", "design", "stuck", "went_backwards", "generations")}

    def metrics_text(self) -> str:
        assert self.dns is not None and self.fleet is not None and self.route53 is not None
        return metrics.render(self.dns.counters(), self.fleet.counters(), dict(self.route53.counters),
                              capacity=self.fleet.capacity.describe(), health=self._health_summary() or None)

    # --- control API (/_chaos_dynamo/...) ------------------------------------------------
    def _control(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        assert self.dns is not None and self.fleet is not None
        parts = [p for p in path.split("/") if p][1:]  # drop "_chaos_dynamo"
        if parts[:1] == ["control"]:
            if self.control_plane is None:
                raise LabError("the lab is stopping: its control plane is gone")
            return control_routes.handle(self.control_plane, method, parts[1:], query, body)
        since = control_routes.parse_since(query)
        if parts == ["status"] and method == "GET":
            return 200, self.status()
        if parts == ["info"] and method == "GET":
            return 200, dataclasses.asdict(self.info())
        if parts == ["dns", "log"] and method == "GET":
            return 200, [dataclasses.asdict(r) for r in self.dns.query_log(since=since)]
        if parts == ["lb", "log"] and method == "GET":
            return 200, [dataclasses.asdict(r) for r in self.fleet.request_log(since=since)]
        if parts == ["availability"] and method == "GET":
            return 200, self.availability(query["endpoint"][0] if "endpoint" in query else None)
        if parts[:1] == ["route53"] and method == "GET":
            name = query["name"][0] if "name" in query else None
            if parts == ["route53", "answers"]:
                return 200, self.answers(name, since)
            if parts == ["route53", "changes"]:
                return 200, self.changes(name, since)
            if parts == ["route53", "health"]:
                return 200, self.health_checks()
            if parts == ["route53", "health", "log"]:
                return 200, self.health_log(since)
        if parts == ["lb", "connections", "close"] and method == "POST":
            chosen = self._chosen_lbs(body)
            if chosen is None:
                return 200, self.fleet.close_connections()
            return 200, {name: self.fleet[name].close_connections() for name in chosen}
        if len(parts) == 3 and parts[0] == "lb" and parts[2] == "faults" and method in ("POST", "PUT"):
            return 200, self._set_faults(parts[1], body or {})
        if parts == ["lb", "faults", "reset"] and method == "POST":
            return 200, self._reset_faults(body)
        if parts == ["dynamodb", "capacity"] and method == "GET":
            return 200, self.fleet.capacity.describe()
        if parts == ["dynamodb", "capacity"] and method in ("POST", "PUT"):
            return 200, self._set_capacity(body if body is not None else {})
        return 404, {"error": f"{method} {path} is not a lab control route", "routes": ROUTES}

    def _chosen_lbs(self, body: Any) -> list[str] | None:
        """The ``lbs`` a request body names (a namespace's, say), checked; None: every LB."""
        assert self.fleet is not None
        if not isinstance(body, dict) or body.get("lbs") is None:
            return None
        chosen, names = body["lbs"], [lb.name for lb in self.fleet]
        if not isinstance(chosen, list) or not all(isinstance(n, str) for n in chosen):
            raise ConfigError("lbs", f"{chosen!r} is not a list of load balancer names", f"use names among {names}")
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise ConfigError("lbs", f"{unknown} are not load balancers of the lab", f"use names among {names}")
        return list(chosen)

    def _reset_faults(self, body: Any) -> dict[str, Any]:
        """Clear the faults of every LB (and DynamoDB's capacity), or of the ``lbs`` the body
        names (and the capacity only with ``"capacity": true``)."""
        assert self.fleet is not None
        chosen = self._chosen_lbs(body)
        capacity = chosen is None or (isinstance(body, dict) and body.get("capacity") is True)
        lbs = list(self.fleet) if chosen is None else [self.fleet[name] for name in chosen]
        for lb in lbs:
            lb.reset_faults()
        if capacity:
            self.fleet.capacity.reset()
        return {lb.name: lb.faults() for lb in lbs}

    def _set_capacity(self, body: Any) -> dict[str, Any]:
        """Change DynamoDB's capacity: ``slots`` (null = unlimited) and/or ``service_time``;
        a key left out keeps its value. Every field is checked before anything changes."""
        assert self.fleet is not None
        known = ("slots", "service_time")
        if not isinstance(body, dict):
            raise ConfigError("capacity", f"{body!r} is not a JSON object",
                              'send e.g. {"slots": 2, "service_time": 0.03}')
        unknown = sorted(set(body) - set(known))
        if unknown:
            raise ConfigError(f"capacity.{unknown[0]}", "is not a capacity knob", f"use {list(known)}")
        capacity = self.fleet.capacity
        current = capacity.describe()
        slots = check_slots(body["slots"], "capacity.slots") if "slots" in body else current["slots"]
        service_time = (check_service_time(body["service_time"], "capacity.service_time")
                        if "service_time" in body else current["service_time"])
        return capacity.configure(slots, service_time)

    def _set_faults(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.fleet is not None
        names = [lb.name for lb in self.fleet]
        if name not in names:
            raise ConfigError("lb", f"{name!r} is not a load balancer of the lab", f"use one of {names}")
        lb = self.fleet[name]
        known = {"down", "refuse_for", "latency", "unhealthy", "error_rate", "error_status", "error_code",
                 "reset", "intermittent"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ConfigError(f"faults.{unknown[0]}", "is not a fault knob", f"use one of {sorted(known)}")
        # Check every knob before turning any, so a bad request changes nothing.
        reset = _bool("faults.reset", body["reset"]) if "reset" in body else False
        down = _bool("faults.down", body["down"]) if "down" in body else None
        refuse_for = _seconds("faults.refuse_for", body["refuse_for"]) if "refuse_for" in body else None
        latency = _seconds("faults.latency", body["latency"]) if "latency" in body else None
        unhealthy = _bool("faults.unhealthy", body["unhealthy"]) if "unhealthy" in body else None
        rate = body.get("error_rate")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                                 or not 0 <= rate <= 1):
            raise ConfigError("faults.error_rate", f"{rate!r} is not a fraction", "use 0.0 to 1.0")
        code = _error_code(body, rate)
        intermittent = (intermittent_from_json(body["intermittent"], self.topology.seed)
                        if "intermittent" in body else None)
        if reset:
            lb.reset_faults()
        # Before down: {"down": false, "intermittent": {...}} comes up already failing.
        if "intermittent" in body:
            if intermittent is None:
                lb.clear_intermittent()
            else:
                lb.set_intermittent(intermittent.rate, intermittent.mode, intermittent.seconds,
                                    intermittent.seed)
        if down is not None:
            lb.set_down(down)
        if refuse_for is not None:
            lb.refuse_for(refuse_for)
        if latency is not None:
            lb.set_latency(latency)
        if unhealthy is not None:
            lb.set_unhealthy(unhealthy)
        if rate is not None:
            lb.set_error_rate(float(rate), seed=self.topology.seed, code=code)
        return lb.faults()


ROUTES = ["GET /_chaos_dynamo/status", "GET /_chaos_dynamo/info",
          "GET /_chaos_dynamo/dns/log?since=T", "GET /_chaos_dynamo/lb/log?since=T",
          "GET /_chaos_dynamo/availability?endpoint=NAME",
          "GET /_chaos_dynamo/route53/answers?name=N&since=T", "GET /_chaos_dynamo/route53/changes?name=N&since=T",
          "GET /_chaos_dynamo/route53/health", "GET /_chaos_dynamo/route53/health/log?since=T",
          "POST /_chaos_dynamo/lb/NAME/faults", "POST /_chaos_dynamo/lb/faults/reset",
          "POST /_chaos_dynamo/lb/connections/close",
          "GET /_chaos_dynamo/dynamodb/capacity", "POST /_chaos_dynamo/dynamodb/capacity",
          *control_routes.ROUTES]
"""Every route of the lab's control API, as the 404 answer lists them. ``lb/faults/reset`` and
``lb/connections/close`` take an optional ``{"lbs": [names]}`` (a namespace's load
balancers); the reset then leaves DynamoDB's capacity alone unless ``"capacity": true``."""

ERROR_STATUSES = (400, 500)
"""HTTP statuses the LB fleet can inject by ``error_status`` alone (see ``LoadBalancer.set_error_rate``);
``error_code`` reaches every code of :data:`~chaos_dynamo.lbfleet.proxy.ERROR_CODES`."""


def _error_code(body: Mapping[str, Any], rate: Any) -> str:
    """The DynamoDB error code a faults request asks for: ``error_code``, else the code
    ``error_status`` stands for (500: InternalServerError, 400: throttling)."""
    codes = list(ERROR_CODES)
    if "error_code" not in body:
        status = body.get("error_status", 500)
        if isinstance(status, bool) or status not in ERROR_STATUSES:
            raise ConfigError("faults.error_status", f"{status!r} is not an injectable status",
                              f"use 500 (InternalServerError) or 400 (throttling), or error_code: one of {codes}")
        return "InternalServerError" if status == 500 else "ProvisionedThroughputExceededException"
    code = body["error_code"]
    if not isinstance(code, str) or code not in ERROR_CODES:
        raise ConfigError("faults.error_code", f"{code!r} is not an injectable DynamoDB error",
                          f"use one of {codes}")
    status = body.get("error_status", ERROR_CODES[code])
    if isinstance(status, bool) or status != ERROR_CODES[code]:
        raise ConfigError("faults.error_status", f"{status!r} is not the status of {code} ({ERROR_CODES[code]})",
                          "omit error_status when giving error_code")
    if rate is None:
        raise ConfigError("faults.error_code", "is set without error_rate",
                          "send error_rate (0.0 to 1.0) with it, e.g. {\"error_rate\": 1.0, "
                          f"\"error_code\": \"{code}\"}}")
    return code


def _lb_json(lb: LBSpec) -> dict[str, Any]:
    return {"name": lb.name, "address": lb.address, "weight": lb.weight, "az": lb.az}


def _at_or_below(name: str, wanted: str) -> bool:
    """Whether ``name`` is ``wanted`` or a name below it (both as timeline_name spells them)."""
    return name == wanted or name.endswith("." + wanted)


def _bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field, f"{value!r} is not true/false", "use true or false")
    return value


def _seconds(field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 86400:
        raise ConfigError(field, f"{value!r} is not a duration in seconds", "use 0 to 86400")
    return float(value)


def require_loopback_url(field: str, url: str) -> str:
    """Refuse a URL whose host is not a loopback address (the lab's safety rule)."""
    host = urlparse(url).hostname or ""
    try:
        check_loopback(field, host)
    except ConfigError as exc:
        raise SafetyError(
            f"{field}: refusing to act on {url}: {exc.problem}. chaos-dynamo changes records only "
            "on a lab at a loopback address"
        ) from None
    return url


__all__ = ["Lab", "ROUTES", "require_loopback_url", "AwsError"]
