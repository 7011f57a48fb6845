"""A reference failover controller as a real process writing Route 53 through the lab.

::

    python -m chaos_dynamo.failover.reference --controller naive \\
        --name app.us-east-1.amazonaws.com --zone us-east-1.amazonaws.com \\
        --targets lb-1,lb-2,lb-3,lb-4,lb-5 --standby lb-6 --interval 0.5 --seed 0 \\
        --http 127.0.0.1:0 --ready-file ready.json

1. Setup (idempotent; what an outage makes fail is retried for up to ``--setup-timeout``
   seconds) builds the failover demo topology in the zone:

   - one Route 53 health check per target (HTTP, IPAddress = the LB's address, Port = the
     lab's LB port, ResourcePath ``/_lb/health``, RequestInterval 10, FailureThreshold 1,
     Regions = the first three checker regions), found by its CallerReference
     ``chaos-dynamo-failover-<name>-<target>`` or created (updated if it drifted);
   - ``pool.<name>`` A: one weighted record per target (set id = the LB's name, value =
     its address, TTL 5, weight 1, no HealthCheckId: the controller decides membership);
     pool records of LBs that are not targets any more are deleted;
   - ``standby.<name>`` A: the standby LB's address;
   - ``<name>`` A: a failover pair, PRIMARY (set id ``primary``) an alias to ``pool.<name>``
     and SECONDARY (set id ``standby``) an alias to ``standby.<name>``, both with
     EvaluateTargetHealth. When every pool record is gone, PRIMARY's target has no records,
     so SECONDARY answers (failover); one record back and PRIMARY answers again.

   It waits until the change is INSYNC (the lab DNS answers from it).
2. Run: every ``--interval`` seconds it reads each target's GetHealthCheckStatus (healthy
   when more than 18% of the checkers' latest observations start with "Success", as
   Route 53 decides; no observation yet: healthy), hands the reads to the
   :mod:`~chaos_dynamo.failover.policy` controller, and applies its decisions as one change
   batch per tick (DELETE / CREATE of pool records; the comment names the controller and
   the reasons). A failed batch or read is logged and counted; after a failed batch the
   pool is read back on the next tick and the controller told what is really in it. The
   loop never stops for an API error.

It serves ``GET /health`` (200 while the loop ticks) and ``GET /metrics`` (Prometheus text)
on ``--http`` and writes ``--ready-file`` (JSON: pid, kind, health_url, metrics_url, ...)
once setup is done. SIGTERM or SIGINT stops it within about two seconds, exit 0, leaving
the records as they are (the next start puts the whole pool back).

The lab is found as activities find it (``$CHAOS_DYNAMO_API``, else the state file
``$CHAOS_DYNAMO_STATE``): its LB addresses, LB port and zones. Route 53 calls go to
``AWS_ENDPOINT_URL`` (the lab's front), which must be a loopback address. Defaults follow
the lab: ``--zone`` its primary endpoint's zone, ``--name`` ``app.<zone>``, ``--standby``
its last LB, ``--targets`` every other LB.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.config import is_loopback_host
from chaos_dynamo.errors import ConfigError, LabError, SafetyError
from chaos_dynamo.failover.policy import (
    CONTROLLERS,
    Add,
    Controller,
    Decision,
    HardenedController,
    Hold,
    Remove,
    make_controller,
)
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.route53.healthchecks import CHECKER_REGIONS, HEALTHY_FRACTION
from chaos_dynamo.route53.records import AliasTarget, RecordSet, normalize_name
from chaos_dynamo.services.reference import (
    RaisingParser,
    StopClock,
    UsageError,
    aws_code,
    non_negative_seconds_arg,
    retrying,
    run_main,
    seconds_arg,
    watch_parent,
)
from chaos_dynamo.services.workload import (
    PROMETHEUS_TEXT,
    RouteServer,
    http_arg,
    seed_arg,
    write_ready_file,
)

__all__ = [
    "CHECK_REGIONS",
    "HEALTHY_FRACTION",
    "SUPERVISED_OPTIONS",
    "Demo",
    "Options",
    "Target",
    "build_parser",
    "caller_reference",
    "change_batch",
    "demo_records",
    "health_check_config",
    "healthy_from_observations",
    "main",
    "parse_args",
    "pool_record",
    "resolve_demo",
    "run",
]

CHECK_REGIONS = CHECKER_REGIONS[:3]
"""The demo's health checks use the first three checker regions (Route 53's minimum)."""
HEALTH_PATH = "/_lb/health"
REQUEST_INTERVAL = 10
FAILURE_THRESHOLD = 1
POOL_TTL = 5
SETUP_TIMEOUT = 30.0
SHUTDOWN_GRACE = 1.5
MAX_COMMENT = 256  # Route 53's limit on a change batch's comment
MAX_CALLER_REFERENCE = 64
SUPERVISED_OPTIONS = ("--controller", "--seed", "--http", "--ready-file")
"""Options the service supervisor sets itself for every instance."""
PREFIX = "chaos_dynamo_failover_"
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


@dataclass(frozen=True)
class Options:
    controller: str
    name: str = ""  # "": app.<zone>
    zone: str = ""  # "": the lab's primary endpoint's zone
    targets: tuple[str, ...] = ()  # (): every LB but the standby
    standby: str = ""  # "": the lab's last LB
    interval: float = 0.5
    seed: int = 0
    settings: tuple[tuple[str, float], ...] = ()
    http: tuple[str, int] = ("127.0.0.1", 0)
    ready_file: Path | None = None
    duration: float = 0.0
    setup_timeout: float = SETUP_TIMEOUT


# --- command line ----------------------------------------------------------------------------

def _number(text: str, *, integer: bool, what: str) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def _whole(text: str) -> float:
    return _number(text, integer=True, what="a whole number")


def _fraction(text: str) -> float:
    return _number(text, integer=False, what="a fraction (0 to 1)")


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names no load balancer (e.g. lb-1,lb-2)")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r} names a load balancer twice")
    return names


def _dns_name(text: str) -> str:
    name = text.strip().lower().rstrip(".")
    labels = name.split(".")
    if len(labels) < 2 or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise argparse.ArgumentTypeError(f"{text!r} is not a DNS name (e.g. app.us-east-1.amazonaws.com)")
    return name


# (option, dest, type, help) of each controller setting; dest is the policy's setting.
_KNOBS: tuple[tuple[str, str, Callable[[str], float], str], ...] = (
    ("--down-after", "down_after", _whole,
     "hardened: unhealthy reads in a row before a target is taken out (default 3)"),
    ("--up-after", "up_after", _whole,
     "hardened: healthy reads in a row before it is put back (default 5)"),
    ("--max-removed-fraction", "max_removed_fraction", _fraction,
     "hardened: at most this fraction of the pool taken out per --velocity-window (default 0.2)"),
    ("--velocity-window", "velocity_window", seconds_arg,
     "hardened: seconds of the velocity limit's window (default 60)"),
    ("--min-fraction", "min_fraction", _fraction,
     "hardened: never fewer than this fraction of the pool in service (default 0.6)"),
    ("--az-threshold", "az_threshold", _fraction,
     "both: evacuate an AZ when at least this fraction of its targets is unhealthy "
     "(default 0.5; 0: no AZ failover)"),
)
_OPTION_OF = {dest: option for option, dest, _, _ in _KNOBS}


def build_parser() -> argparse.ArgumentParser:
    parser = RaisingParser(
        prog="python -m chaos_dynamo.failover.reference", allow_abbrev=False,
        description="A reference failover controller: reads the Route 53 health checks of a "
                    "pool of load balancers and keeps their records in DNS under --controller's "
                    "policy (the failover demo topology; see the module docstring).",
        epilog="The lab comes from $CHAOS_DYNAMO_API or the state file, the Route 53 endpoint "
               "from AWS_ENDPOINT_URL (`chaos-dynamo lab env`). SIGTERM/SIGINT: stop and exit 0, "
               "records left as they are.")
    parser.add_argument("--controller", required=True, choices=CONTROLLERS,
                        help="naive (believes each read, evacuates AZs, no limits) or hardened "
                             "(hysteresis, velocity limit, floor)")
    parser.add_argument("--name", type=_dns_name, default=None, metavar="NAME",
                        help="the service's name (default app.<zone>)")
    parser.add_argument("--zone", type=_dns_name, default=None, metavar="ZONE",
                        help="the lab's hosted zone holding it (default: the primary endpoint's)")
    parser.add_argument("--targets", type=_names, default=(), metavar="LB,LB,...",
                        help="the pool's load balancers (default: every LB but the standby)")
    parser.add_argument("--standby", default="", metavar="LB",
                        help="the load balancer SECONDARY answers with (default: the last LB)")
    parser.add_argument("--interval", type=seconds_arg, default=0.5, metavar="SECONDS",
                        help="seconds between two reads of the health checks (default 0.5)")
    parser.add_argument("--seed", type=seed_arg, default=0,
                        help="recorded for replay; the controllers draw nothing at random (default 0)")
    metavars: dict[Callable[[str], float], str] = {_whole: "N", _fraction: "FRACTION",
                                                  seconds_arg: "SECONDS"}
    for option, dest, kind, text in _KNOBS:
        parser.add_argument(option, dest=dest, type=kind, default=None, metavar=metavars[kind],
                            help=text)
    parser.add_argument("--http", type=http_arg, default=("127.0.0.1", 0), metavar="HOST:PORT",
                        help="where /health and /metrics are served, loopback only "
                             "(default 127.0.0.1:0, a free port)")
    parser.add_argument("--ready-file", type=Path, default=None, metavar="PATH",
                        help="write {pid, kind, health_url, metrics_url, ...} here once running")
    parser.add_argument("--duration", type=non_negative_seconds_arg, default=0.0, metavar="SECONDS",
                        help="stop after this long (default 0: until SIGTERM)")
    parser.add_argument("--setup-timeout", type=seconds_arg, default=SETUP_TIMEOUT, metavar="SECONDS",
                        help=f"give up setting the topology up after this long (default {SETUP_TIMEOUT:g})")
    return parser


def _usage_field(message: str) -> str:
    match = re.match(r"argument ([^:]+):", message)
    if match:
        return match.group(1).split("/")[-1]
    if "required" in message:
        return message.rsplit(":", 1)[-1].strip().split(",")[0]
    return "arguments"


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Options from the command line (load balancer names are checked against the lab at
    run time).

    Raises:
        ConfigError: naming the option (``--down-after``, ``--targets``...), the value and
            the fix.
    """
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except UsageError as exc:
        message = str(exc)
        raise ConfigError(_usage_field(message), re.sub(r"^argument [^:]+: ", "", message),
                          "see `python -m chaos_dynamo.failover.reference --help`") from None
    ready: Path | None = ns.ready_file
    if ready is not None:
        ready = ready.absolute()
        if not ready.parent.is_dir():
            raise ConfigError("--ready-file", f"directory {ready.parent} does not exist",
                              "give a path in an existing directory")
    standby = str(ns.standby).strip()
    if standby and standby in ns.targets:
        raise ConfigError("--standby", f"{standby!r} is also in --targets",
                          "the standby answers only when the pool is empty: take it out of --targets")
    name, zone = ns.name or "", ns.zone or ""
    if name and zone and not (name == zone or name.endswith("." + zone)):
        raise ConfigError("--name", f"{name!r} is not inside --zone {zone!r}",
                          f"give a name ending in .{zone}")
    settings = tuple((dest, getattr(ns, dest)) for _, dest, _, _ in _KNOBS
                     if getattr(ns, dest) is not None)
    _controller(ns.controller, {"x": "a"}, settings)  # a bad setting fails here, not later
    return Options(controller=ns.controller, name=name, zone=zone, targets=ns.targets,
                   standby=standby, interval=ns.interval, seed=ns.seed, settings=settings,
                   http=ns.http, ready_file=ready, duration=ns.duration,
                   setup_timeout=ns.setup_timeout)


def _controller(name: str, targets: Mapping[str, str],
                settings: Sequence[tuple[str, float]]) -> Controller:
    try:
        return make_controller(name, targets, dict(settings))
    except ConfigError as exc:
        option = _OPTION_OF.get(exc.field, exc.field)
        fix = exc.fix
        for dest, opt in _OPTION_OF.items():
            fix = re.sub(rf"\b{dest}\b", opt, fix)
        raise ConfigError(option, exc.problem, fix) from None


# --- the demo topology (pure) ------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """A load balancer of the lab: its name, address and AZ."""

    name: str
    address: str
    az: str


@dataclass(frozen=True)
class Demo:
    """The failover demo topology of one service name, resolved against a lab."""

    name: str  # lower case, no trailing dot
    zone: str
    zone_id: str
    port: int  # the lab's LB port
    targets: tuple[Target, ...]
    standby: Target

    @property
    def pool_name(self) -> str:
        return f"pool.{self.name}"

    @property
    def standby_name(self) -> str:
        return f"standby.{self.name}"

    def target(self, name: str) -> Target:
        return next(t for t in self.targets if t.name == name)


def caller_reference(name: str, target: str) -> str:
    """The CallerReference of ``target``'s health check for service ``name``."""
    return f"chaos-dynamo-failover-{name.rstrip('.')}-{target}"


def resolve_demo(options: Options, info: LabInfo) -> Demo:
    """The demo topology ``options`` ask for on the lab ``info`` describes.

    Raises:
        ConfigError: a zone the lab does not serve, a name outside it, a load balancer the
            lab does not have, or a name too long for a CallerReference.
    """
    zones = {z.lower().rstrip("."): zid for z, zid in info.zones.items()}
    zone = options.zone or (info.primary_endpoint.zone.lower().rstrip(".") if info.endpoints else "")
    if zone not in zones:
        raise ConfigError("--zone", f"{zone!r} is not a zone of the lab",
                          f"use one of {sorted(zones)}")
    name = options.name or f"app.{zone}"
    if not (name == zone or name.endswith("." + zone)):
        raise ConfigError("--name", f"{name!r} is not inside --zone {zone!r}",
                          f"give a name ending in .{zone}")
    lbs = {str(lb["name"]): Target(str(lb["name"]), str(lb["address"]), str(lb.get("az", "")))
           for lb in info.load_balancers}
    if len(lbs) < 2:
        raise ConfigError("--targets", f"the lab has {len(lbs)} load balancer(s)",
                          "the demo needs at least two: one pool target and a standby")
    standby = options.standby or list(lbs)[-1]
    if standby not in lbs:
        raise ConfigError("--standby", f"{standby!r} is not a load balancer of the lab",
                          f"use one of {sorted(lbs)}")
    names = options.targets or tuple(n for n in lbs if n != standby)
    unknown = [n for n in names if n not in lbs]
    if unknown:
        raise ConfigError("--targets", f"{unknown} are not load balancers of the lab",
                          f"use names among {sorted(lbs)}")
    if standby in names:
        raise ConfigError("--standby", f"{standby!r} is also in --targets",
                          "the standby answers only when the pool is empty: take it out of --targets")
    longest = max((caller_reference(name, n) for n in names), key=len)
    if len(longest) > MAX_CALLER_REFERENCE:
        raise ConfigError("--name", f"{name!r} makes the health check CallerReference {longest!r} "
                                    f"longer than {MAX_CALLER_REFERENCE} characters",
                          "use a shorter --name")
    return Demo(name=name, zone=zone, zone_id=zones[zone], port=info.lb_port,
                targets=tuple(lbs[n] for n in names), standby=lbs[standby])


def health_check_config(demo: Demo, target: Target) -> dict[str, Any]:
    """The boto3 ``HealthCheckConfig`` of ``target``'s health check."""
    return {"Type": "HTTP", "IPAddress": target.address, "Port": demo.port,
            "ResourcePath": HEALTH_PATH, "RequestInterval": REQUEST_INTERVAL,
            "FailureThreshold": FAILURE_THRESHOLD, "Regions": list(CHECK_REGIONS)}


def pool_record(demo: Demo, target: Target) -> RecordSet:
    """``target``'s weighted record in ``pool.<name>`` (no health check: the controller
    decides membership by creating and deleting it)."""
    return RecordSet(name=demo.pool_name, type="A", ttl=POOL_TTL, values=(target.address,),
                     set_identifier=target.name, weight=1)


def demo_records(demo: Demo) -> list[RecordSet]:
    """Every record of the demo, targets of aliases before the aliases."""
    pool = [pool_record(demo, t) for t in demo.targets]
    standby = RecordSet(name=demo.standby_name, type="A", ttl=POOL_TTL, values=(demo.standby.address,))
    primary = RecordSet(name=demo.name, type="A", set_identifier="primary", failover="PRIMARY",
                        alias=AliasTarget(demo.zone_id, demo.pool_name, evaluate_target_health=True))
    secondary = RecordSet(name=demo.name, type="A", set_identifier="standby", failover="SECONDARY",
                          alias=AliasTarget(demo.zone_id, demo.standby_name, evaluate_target_health=True))
    return [*pool, standby, primary, secondary]


def change_batch(demo: Demo, controller: str, decisions: Sequence[Decision]) -> dict[str, Any] | None:
    """The change batch applying ``decisions`` (Holds apply nothing); None if empty."""
    changes: list[dict[str, Any]] = []
    notes: list[str] = []
    for d in decisions:
        if isinstance(d, Hold):
            continue
        action = "DELETE" if isinstance(d, Remove) else "CREATE"
        changes.append({"Action": action, "ResourceRecordSet": pool_record(demo, demo.target(d.target)).to_api()})
        notes.append(f"{'remove' if isinstance(d, Remove) else 'add'} {d.target} ({d.reason})")
    if not changes:
        return None
    comment = f"chaos-dynamo failover-{controller}: " + "; ".join(notes)
    if len(comment) > MAX_COMMENT:
        comment = comment[:MAX_COMMENT - 3] + "..."
    return {"Comment": comment, "Changes": changes}


def healthy_from_observations(observations: Sequence[Mapping[str, Any]]) -> bool:
    """Route 53's rule: healthy when more than 18% of the checkers' latest observations
    are successes; no observation yet (a new health check): healthy."""
    if not observations:
        return True
    ok = sum(1 for o in observations
             if str((o.get("StatusReport") or {}).get("Status", "")).startswith("Success"))
    return ok / len(observations) > HEALTHY_FRACTION


# --- Route 53 through the lab ------------------------------------------------------------------

def route53_endpoint(environ: Mapping[str, str]) -> str:
    """The Route 53 endpoint (``AWS_ENDPOINT_URL_ROUTE_53``, else ``AWS_ENDPOINT_URL``),
    after checking it is a loopback address.

    Raises:
        SafetyError: none is set (boto3 would call real AWS) or it is not loopback.
    """
    url = environ.get("AWS_ENDPOINT_URL_ROUTE_53") or environ.get("AWS_ENDPOINT_URL") or ""
    fix = "run it with the lab's environment (`eval \"$(chaos-dynamo lab env)\"`)"
    if not url:
        raise SafetyError(f"AWS_ENDPOINT_URL is not set, so boto3 would call real Route 53; {fix}")
    try:
        host = urlparse(url).hostname or ""
    except ValueError:
        host = ""
    if not is_loopback_host(host):
        raise SafetyError(f"AWS_ENDPOINT_URL={url!r} is not a loopback address: the failover "
                          f"controller writes Route 53 on the lab only; {fix}")
    return url


def route53_client(endpoint: str, region: str, *, connect_timeout: float = 2.0,
                   read_timeout: float = 5.0) -> Any:
    """A boto3 Route 53 client for the lab's front: no botocore retries, short timeouts."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "route53", endpoint_url=endpoint, region_name=region, aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=connect_timeout,
                      read_timeout=read_timeout))


def _list_health_checks(client: Any) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = client.list_health_checks(**kwargs)
        checks.extend(page.get("HealthChecks", []))
        if not page.get("IsTruncated") or not page.get("NextMarker"):
            return checks
        kwargs["Marker"] = page["NextMarker"]


def _drift(have: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """Fields of ``want`` that ``have`` differs in (Regions compared as sets)."""
    out = []
    for key, value in want.items():
        got = have.get(key)
        if key == "Regions":
            if sorted(got or ()) != sorted(value):
                out.append(key)
        elif got != value:
            out.append(key)
    return out


def ensure_health_checks(client: Any, demo: Demo) -> dict[str, str]:
    """Find (by CallerReference) or create each target's health check, updating one whose
    address, port, path, threshold or regions drifted; target -> health check id.

    Raises:
        LabError: a health check with the CallerReference has a type or interval that
            cannot be updated.
    """
    existing = {str(c.get("CallerReference", "")): c for c in _list_health_checks(client)}
    ids: dict[str, str] = {}
    for target in demo.targets:
        want = health_check_config(demo, target)
        reference = caller_reference(demo.name, target.name)
        found = existing.get(reference)
        if found is None:
            answer = client.create_health_check(CallerReference=reference, HealthCheckConfig=want)
            ids[target.name] = str(answer["HealthCheck"]["Id"])
            continue
        check_id = str(found["Id"])
        drift = _drift(found.get("HealthCheckConfig", {}), want)
        fixed = {"Type", "RequestInterval"} & set(drift)
        if fixed:
            raise LabError(f"health check {check_id} (CallerReference {reference}) has another "
                           f"{' and '.join(sorted(fixed))} than the demo's (HTTP, 10 s), which "
                           f"cannot be updated; delete it (DeleteHealthCheck {check_id}) or use "
                           "another --name")
        if drift:
            client.update_health_check(
                HealthCheckId=check_id, IPAddress=want["IPAddress"], Port=want["Port"],
                ResourcePath=want["ResourcePath"], FailureThreshold=want["FailureThreshold"],
                Regions=want["Regions"])
        ids[target.name] = check_id
    return ids


def read_pool(client: Any, demo: Demo) -> list[RecordSet]:
    """The records of ``pool.<name>`` now."""
    from chaos_dynamo.endpoint._lab import records_at

    return [r for r in records_at(client, demo.zone_id, demo.pool_name) if r.type == "A"]


def ensure_records(client: Any, demo: Demo, controller: str) -> str:
    """Put the whole demo topology in place in one change batch; its change id."""
    wanted = demo_records(demo)
    keep = {r.set_identifier for r in wanted if r.name == normalize_name(demo.pool_name)}
    changes = [{"Action": "DELETE", "ResourceRecordSet": r.to_api()}
               for r in read_pool(client, demo) if r.set_identifier not in keep]
    changes += [{"Action": "UPSERT", "ResourceRecordSet": r.to_api()} for r in wanted]
    answer = client.change_resource_record_sets(
        HostedZoneId=demo.zone_id,
        ChangeBatch={"Comment": f"chaos-dynamo failover-{controller}: set up the demo topology "
                                f"of {demo.name} (the whole pool in service)",
                     "Changes": changes})
    return str(answer["ChangeInfo"]["Id"])


def setup(client: Any, demo: Demo, controller: str, *, timeout: float, clock: Clock,
          stop: threading.Event) -> dict[str, str] | None:
    """Health checks and records of the demo, INSYNC; target -> health check id, or None
    if stopped meanwhile.

    Raises:
        LabError: not done after ``timeout`` seconds, or refused for a reason a retry will
            not fix (the message keeps the AWS error).
    """
    sclock = StopClock(clock, stop)
    deadline = sclock.monotonic() + timeout
    ids: dict[str, str] = {}
    change: list[str] = []

    def checks_step() -> bool:
        ids.update(ensure_health_checks(client, demo))
        return True

    def records_step() -> bool:
        if not change:
            change.append(ensure_records(client, demo, controller))
        return bool(client.get_change(Id=change[0])["ChangeInfo"]["Status"] == "INSYNC")

    for step, what in ((checks_step, f"create the health checks of {demo.name}"),
                       (records_step, f"create the records of {demo.name}")):
        if not retrying(step, what=what, timeout=timeout, deadline=deadline, clock=sclock, stop=stop):
            return None
    return ids


# --- the loop ----------------------------------------------------------------------------------

@dataclass
class LoopStats:
    ticks: int = 0
    api_errors: int = 0
    batches: int = 0
    failed_batches: int = 0
    resyncs: int = 0
    last_tick: float | None = None  # monotonic
    health: dict[str, bool] = field(default_factory=dict)  # the last read of each target


class FailoverLoop:
    """Reads the health checks, asks the controller, writes the pool; one :meth:`tick` at a
    time. Thread-safe for readers (:meth:`snapshot`)."""

    def __init__(self, client: Any, demo: Demo, checks: Mapping[str, str], controller: Controller,
                 *, clock: Clock, log: Callable[[str], None] = print) -> None:
        self.client = client
        self.demo = demo
        self.checks = dict(checks)
        self.controller = controller
        self.clock = clock
        self.log = log
        self.stats = LoopStats()
        self._resync = False
        self._lock = threading.Lock()

    def _read(self, target: str) -> bool | None:
        try:
            answer = self.client.get_health_check_status(HealthCheckId=self.checks[target])
        except Exception as exc:  # noqa: BLE001 - counted and logged; the loop goes on
            self.log(f"failover: cannot read the health of {target} "
                     f"({aws_code(exc) or type(exc).__name__}: {exc})")
            with self._lock:
                self.stats.api_errors += 1
            return None
        return healthy_from_observations(answer.get("HealthCheckObservations") or [])

    def _read_back(self) -> None:
        try:
            pool = read_pool(self.client, self.demo)
        except Exception as exc:  # noqa: BLE001
            self.log(f"failover: cannot read {self.demo.pool_name} back ({exc}); trying next tick")
            with self._lock:
                self.stats.api_errors += 1
            return
        names = [r.set_identifier for r in pool if r.set_identifier]
        with self._lock:
            self.controller.resync(names)
            self.stats.resyncs += 1
            self._resync = False
        self.log(f"failover: read {self.demo.pool_name} back: in service {sorted(names)}")

    def tick(self) -> list[Decision]:
        """One read-decide-write round; never raises for an API error."""
        if self._resync:
            self._read_back()
        reads = {t: ok for t in self.checks if (ok := self._read(t)) is not None}
        with self._lock:
            decisions = self.controller.observe(self.clock.monotonic(), reads)
            self.stats.ticks += 1
            self.stats.last_tick = self.clock.monotonic()
            self.stats.health.update(reads)
        for d in decisions:
            verb = {Remove: "remove", Add: "add", Hold: "hold"}[type(d)]
            self.log(f"failover-{self.controller.name}: {verb} {d.target}: {d.reason}")
        batch = change_batch(self.demo, self.controller.name, decisions)
        if batch is None:
            return decisions
        try:
            self.client.change_resource_record_sets(HostedZoneId=self.demo.zone_id, ChangeBatch=batch)
        except Exception as exc:  # noqa: BLE001 - the zone is read back next tick
            self.log(f"failover-{self.controller.name}: change batch failed "
                     f"({aws_code(exc) or type(exc).__name__}: {exc}); reading the pool back next tick")
            with self._lock:
                self.stats.api_errors += 1
                self.stats.failed_batches += 1
                self._resync = True
        else:
            with self._lock:
                self.stats.batches += 1
        return decisions

    def run(self, stop: threading.Event, interval: float) -> None:
        """Tick every ``interval`` seconds (on a fixed schedule; a late tick skips ahead)
        until ``stop`` is set."""
        due = self.clock.monotonic()
        while not stop.is_set():
            self.tick()
            due += interval
            now = self.clock.monotonic()
            if due < now:
                due = now
            if stop.wait(due - now):
                return

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            s = self.stats
            c = self.controller
            out: dict[str, Any] = {
                "controller": c.name, "in_service": list(c.in_service()),
                "targets": [t.name for t in self.demo.targets], **c.counters(),
                "ticks": s.ticks, "api_errors": s.api_errors, "batches": s.batches,
                "failed_batches": s.failed_batches, "resyncs": s.resyncs,
                "last_tick": s.last_tick, "health": dict(s.health),
                "evacuated_azs": list(c.describe().get("evacuated_azs", [])),
                "held": c.held() if isinstance(c, HardenedController) else {},
            }
        return out


# --- health and metrics ------------------------------------------------------------------------

def health(snapshot: Mapping[str, Any], now: float, interval: float) -> tuple[int, dict[str, Any]]:
    """``(200, body)`` while the loop ticks (its last tick at most ``max(5 s, 5 intervals)``
    ago), else 503."""
    last = snapshot.get("last_tick")
    stale = max(5.0, 5 * interval)
    body = {"kind": f"failover-{snapshot['controller']}", "ticks": snapshot["ticks"],
            "in_service": snapshot["in_service"], "targets": snapshot["targets"]}
    if last is None:
        return 503, {"healthy": False, "reason": "no tick yet", **body}
    age = now - float(last)
    if age > stale:
        return 503, {"healthy": False, "reason": f"no tick for {age:.1f} s", **body}
    return 200, {"healthy": True, "last_tick_age": round(age, 3), **body}


_COUNTERS = {
    "removals": "Targets taken out of the pool (each one of an AZ evacuation counts).",
    "adds": "Targets put back into the pool.",
    "held_by_velocity": "Removals (or AZ evacuations) the velocity limit held, once per hold.",
    "held_by_floor": "Removals (or AZ evacuations) the floor held, once per hold.",
    "az_evacuations": "AZs evacuated.",
    "ticks": "Rounds of reading the health checks.",
    "api_errors": "Route 53 calls that failed (reads and change batches).",
    "batches": "Change batches applied.",
}


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(snapshot: Mapping[str, Any], demo: Demo) -> str:
    """The loop's snapshot in the Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {PREFIX}{name} {help_text}")
        lines.append(f"# TYPE {PREFIX}{name} {kind}")
        lines.extend(f"{PREFIX}{name}{labels} {int(value)}" for labels, value in samples)

    in_service = set(snapshot["in_service"])
    metric("in_service", "gauge", "Targets the controller keeps in the pool.", [("", len(in_service))])
    metric("targets", "gauge", "Targets of the pool.", [("", len(demo.targets))])
    metric("held", "gauge", "Removals (or AZ evacuations) held by a limit now.",
           [("", len(snapshot.get("held") or {}))])
    metric("evacuated_azs", "gauge", "AZs evacuated now.", [("", len(snapshot["evacuated_azs"]))])
    metric("target_in_service", "gauge", "1 while the target's pool record is in, else 0.",
           [(f'{{target="{_label(t.name)}",az="{_label(t.az)}"}}', int(t.name in in_service))
            for t in demo.targets])
    reads = snapshot["health"]
    metric("target_healthy", "gauge", "The target's last health read (1 healthy, 0 unhealthy).",
           [(f'{{target="{_label(t)}"}}', int(bool(reads[t]))) for t in sorted(reads)])
    for name, help_text in _COUNTERS.items():
        metric(f"{name}_total", "counter", help_text, [("", snapshot[name])])
    return "\n".join(lines) + "\n"


class StatusServer(RouteServer):
    """``GET /health`` and ``GET /metrics`` of a running controller, on loopback."""

    def __init__(self, host: str, port: int, loop: FailoverLoop, interval: float) -> None:
        def get_health() -> tuple[int, str, str]:
            status, body = health(loop.snapshot(), loop.clock.monotonic(), interval)
            return status, "application/json", json.dumps(body, sort_keys=True) + "\n"

        def get_metrics() -> tuple[int, str, str]:
            return 200, PROMETHEUS_TEXT, render_metrics(loop.snapshot(), loop.demo)

        super().__init__(host, port, {"/health": get_health, "/metrics": get_metrics})


# --- the process -------------------------------------------------------------------------------

def _limits(controller: Controller) -> str:
    if isinstance(controller, HardenedController):
        c = controller
        return (f"down_after={c.down_after} up_after={c.up_after} velocity={c.velocity_allowance} "
                f"per {c.velocity_window:g} s floor={c.floor} of {len(c.targets)} "
                f"az_threshold={c.az_threshold:g}")
    return f"az_threshold={controller.describe()['az_threshold']:g} (no limits)"


def run(options: Options, *, clock: Clock = REAL_CLOCK, stop: threading.Event | None = None,
        environ: Mapping[str, str] | None = None, info: LabInfo | None = None) -> tuple[int, bool]:
    """Set up the demo topology and run the controller until stopped; (exit code, whether
    the loop ended in time).

    Installs SIGTERM/SIGINT handlers when called from the main thread.
    """
    environ = os.environ if environ is None else environ
    stop = stop if stop is not None else threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    endpoint = route53_endpoint(environ)
    if info is None:
        from chaos_dynamo.endpoint._lab import lab_info

        info = lab_info(None)  # refuses a lab whose addresses are not loopback
    demo = resolve_demo(options, info)
    for target in (*demo.targets, demo.standby):
        if not is_loopback_host(target.address):
            raise SafetyError(f"load balancer {target.name} is at {target.address}, not loopback: "
                              "the lab's health checks and records point at loopback only")
    watch_parent(environ, stop, clock)
    kind = f"failover-{options.controller}"
    controller = _controller(options.controller, {t.name: t.az for t in demo.targets}, options.settings)
    setup_client = route53_client(endpoint, info.region)
    try:
        checks = setup(setup_client, demo, options.controller, timeout=options.setup_timeout,
                       clock=clock, stop=stop)
    finally:
        setup_client.close()
    if checks is None:
        return 0, True
    client = route53_client(endpoint, info.region, connect_timeout=1.0, read_timeout=2.0)
    loop = FailoverLoop(client, demo, checks, controller, clock=clock,
                        log=lambda line: print(line, flush=True))
    server = StatusServer(*options.http, loop, options.interval)
    server.start()
    worker = threading.Thread(target=loop.run, args=(stop, options.interval), name="failover-loop",
                              daemon=True)
    ready_written = False
    try:
        info_out = {"pid": os.getpid(), "kind": kind, "controller": options.controller,
                    "health_url": f"{server.url}/health", "metrics_url": f"{server.url}/metrics",
                    "name": demo.name, "zone": demo.zone, "zone_id": demo.zone_id,
                    "pool_name": demo.pool_name, "standby_name": demo.standby_name,
                    "targets": [t.name for t in demo.targets], "standby": demo.standby.name,
                    "health_checks": checks, "interval": options.interval, "seed": options.seed}
        print(f"reference {kind} pid={os.getpid()} name={demo.name} zone={demo.zone} "
              f"targets={','.join(f'{t.name}({t.az})' for t in demo.targets)} "
              f"standby={demo.standby.name} interval={options.interval:g} seed={options.seed} "
              f"{_limits(controller)} health={info_out['health_url']}", flush=True)
        worker.start()
        if options.duration:
            def end_after() -> None:
                stop.wait(options.duration)
                stop.set()

            threading.Thread(target=end_after, name="duration", daemon=True).start()
        if options.ready_file is not None:
            write_ready_file(options.ready_file, info_out)
            ready_written = True
        while not stop.wait(0.2):
            pass
        worker.join(SHUTDOWN_GRACE)
        s = loop.snapshot()
        print(f"reference {kind} pid={os.getpid()} stopped: in_service={len(s['in_service'])}/"
              f"{len(s['targets'])} removals={s['removals']} adds={s['adds']} "
              f"held_by_velocity={s['held_by_velocity']} held_by_floor={s['held_by_floor']} "
              f"az_evacuations={s['az_evacuations']} ticks={s['ticks']} api_errors={s['api_errors']}",
              flush=True)
        return 0, not worker.is_alive()
    finally:
        stop.set()
        server.close()
        if ready_written and options.ready_file is not None:
            options.ready_file.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("failover reference", lambda: parse_args(argv), run, build_parser)


if __name__ == "__main__":
    sys.exit(main())
