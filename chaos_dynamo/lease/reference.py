"""A reference lease fleet as a real process on the lab.

::

    python -m chaos_dynamo.lease.reference --manager hardened --leases 100 --renew-every 4 \\
        --expiry 10 --job-timeout 0.6 --table chaos-dynamo-leases --seed 0 --shard 0/1 \\
        --http 127.0.0.1:0 --ready-file ready.json

It holds one lease per host, as EC2's DropletWorkflow Manager did, in a DynamoDB table
reached through the endpoint's *name* (``AWS_ENDPOINT_URL_DYNAMODB``, resolved through
the lab DNS by the chaos-dynamo shim):

1. Setup: creates the table if missing (on-demand, hash key ``lease_id`` S) and writes
   this shard's leases (``host-%05d``; owner ``<service>-<instance>`` from
   ``CHAOS_DYNAMO_SERVICE`` / ``CHAOS_DYNAMO_INSTANCE``, version 1, expiry now + E),
   retrying what an outage makes fail for up to ``--setup-timeout`` seconds. A lease of
   the shard that is already there (an earlier run) is overwritten.
2. Run: :class:`~chaos_dynamo.lease.fleet.LeaseFleet` renews the leases and
   re-establishes expired ones under the ``--manager`` policy (``naive``: unbounded FIFO,
   re-queue on timeout; ``hardened``: bounded LIFO, token bucket, jittered backoff);
   :class:`~chaos_dynamo.lease.driver.LabDriver` carries its ops with boto3.

``--shard I/N`` splits ``--leases`` into N contiguous ranges and holds range I, so N
processes (the supervisor's instances) hold the table together. It serves
``GET /health`` (200 while the fleet believes it holds at least 99% of its leases, else
503) and ``GET /metrics`` (Prometheus text: the fleet's counters and the manager's) on
``--http``, and writes ``--ready-file`` (JSON: pid, kind, health_url, metrics_url, ...)
once setup is done and the fleet runs. SIGTERM or SIGINT stops it; it exits 0 within
about two seconds.

Like :mod:`chaos_dynamo.services.reference`, it talks to the lab only: the endpoint must
be set and lead to loopback addresses (or not resolve at all while the lab shim is on).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import re
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lease.driver import (
    DEFAULT_TABLE,
    EXPIRES_AT,
    KEY,
    OWNER,
    VERSION,
    LabDriver,
    make_clients,
)
from chaos_dynamo.lease.fleet import (
    FleetParams,
    FleetStats,
    LeaseFleet,
    fleet_rng,
    lease_keys,
    manager_rng,
    validate,
)
from chaos_dynamo.lease.managers import Manager, make_manager
from chaos_dynamo.lease.ops import Kind
from chaos_dynamo.services.reference import (
    RaisingParser,
    StopClock,
    UsageError,
    check_endpoint,
    non_negative_seconds_arg,
    retrying,
    run_main,
    seconds_arg,
    setup_client,
    table_step,
    watch_parent,
)
from chaos_dynamo.services.workload import (
    PROMETHEUS_TEXT,
    RouteServer,
    http_arg,
    seed_arg,
    table_arg,
    write_ready_file,
)

__all__ = [
    "HEALTH_THRESHOLD",
    "MANAGERS",
    "SUPERVISED_OPTIONS",
    "Options",
    "build_parser",
    "main",
    "owner_id",
    "parse_args",
    "run",
    "shard_range",
]

MANAGERS = ("naive", "hardened")
HEALTH_THRESHOLD = 0.99
"""/health is 200 while the fleet believes it holds at least this fraction of its leases."""
SETUP_TIMEOUT = 30.0
SHUTDOWN_GRACE = 1.0
BATCH = 25  # BatchWriteItem's limit
SUPERVISED_OPTIONS = ("--manager", "--seed", "--shard", "--http", "--ready-file")
"""Options the service supervisor sets itself for every instance."""
PREFIX = "chaos_dynamo_lease_"

_MANAGER_ARG = re.compile(r"^([a-z_][a-z0-9_]*)=(.+)$")
_DEFAULTS = FleetParams()
# FleetParams field -> its option (validation errors name what the user typed).
_OPTION_OF = {f.name: "--" + f.name.replace("_", "-") for f in dataclasses.fields(FleetParams)}
_OPTION_OF["leases"] = "--leases"
_OPTION_OF["first_key"] = "--shard"


@dataclass(frozen=True)
class Options:
    manager: str
    params: FleetParams  # this shard's: leases and first_key already split
    total_leases: int
    shard: tuple[int, int] = (0, 1)
    manager_args: tuple[tuple[str, float], ...] = ()
    table: str = DEFAULT_TABLE
    seed: int = 0
    http: tuple[str, int] = ("127.0.0.1", 0)
    ready_file: Path | None = None
    duration: float = 0.0
    setup_timeout: float = SETUP_TIMEOUT


# --- command line ------------------------------------------------------------------------

def _number(text: str, *, integer: bool, low: float, what: str) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not (math.isfinite(value) and value >= low):
        raise argparse.ArgumentTypeError(f"{text!r} must be {what} >= {low:g}")
    return value


def _count(text: str) -> int:
    return int(_number(text, integer=True, low=1, what="a whole number"))


def _whole(text: str) -> int:
    return int(_number(text, integer=True, low=0, what="a whole number"))


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N (e.g. 0/1, 2/4)")
    i, n = int(index), int(count)
    if n < 1 or i >= n:
        raise argparse.ArgumentTypeError(f"{text!r}: need N >= 1 and 0 <= I < N")
    return i, n


def _manager_arg(text: str) -> tuple[str, float]:
    match = _MANAGER_ARG.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=NUMBER (e.g. workers=16)")
    name, raw = match.groups()
    try:
        value: float = int(raw) if re.fullmatch(r"[+-]?\d+", raw) else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {raw!r} is not a number") from None
    return name, value


def build_parser() -> argparse.ArgumentParser:
    d = _DEFAULTS
    parser = RaisingParser(
        prog="python -m chaos_dynamo.lease.reference", allow_abbrev=False,
        description="A reference lease fleet: one lease per host in DynamoDB, renewed, and "
                    "re-established under --manager's policy when it expires.",
        epilog="The endpoint, region and credentials come from the environment "
               "(`chaos-dynamo lab env`). SIGTERM/SIGINT: stop and exit 0.")
    parser.add_argument("--manager", required=True, choices=MANAGERS,
                        help="naive (unbounded FIFO, re-queue at once) or hardened (bounded "
                             "LIFO, token bucket, jittered backoff)")
    parser.add_argument("--manager-arg", type=_manager_arg, action="append", default=[],
                        metavar="NAME=NUMBER",
                        help="a manager setting, e.g. workers=16 (naive) or max_in_flight=3, "
                             "rate=4 (hardened); repeatable")
    parser.add_argument("--leases", type=_count, default=d.leases, metavar="N",
                        help=f"leases of the whole fleet, split by --shard (default {d.leases})")
    parser.add_argument("--renew-every", type=seconds_arg, default=d.renew_every, metavar="SECONDS",
                        help=f"H: time between renewals of one lease (default {d.renew_every:g})")
    parser.add_argument("--expiry", type=seconds_arg, default=d.expiry, metavar="SECONDS",
                        help=f"E: a renewal writes expires_at = now + E (default {d.expiry:g}; > H)")
    parser.add_argument("--renew-timeout", type=seconds_arg, default=d.renew_timeout, metavar="SECONDS",
                        help=f"client timeout of one renewal (default {d.renew_timeout:g})")
    parser.add_argument("--renew-retry", type=seconds_arg, default=d.renew_retry, metavar="SECONDS",
                        help=f"retry a failed renewal after this (default {d.renew_retry:g})")
    parser.add_argument("--renew-concurrency", type=_count, default=d.renew_concurrency, metavar="N",
                        help=f"renewals in flight at most (default {d.renew_concurrency})")
    parser.add_argument("--work-reads", type=_whole, default=d.work_reads, metavar="N",
                        help=f"reads of a re-establishment job before its acquire (default {d.work_reads})")
    parser.add_argument("--job-timeout", type=seconds_arg, default=d.job_timeout, metavar="SECONDS",
                        help=f"deadline of one re-establishment job (default {d.job_timeout:g})")
    # In a lab namespace the default table carries its prefix ($CHAOS_DYNAMO_TABLE_PREFIX).
    parser.add_argument("--table", type=table_arg, default=os.environ.get("CHAOS_DYNAMO_TABLE_PREFIX", "") + DEFAULT_TABLE,
                        help=f"lease table, created if missing (default {DEFAULT_TABLE}, after "
                        "$CHAOS_DYNAMO_TABLE_PREFIX)")
    parser.add_argument("--seed", type=seed_arg, default=0, help="seed of renewal phases and jitter (default 0)")
    parser.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N",
                        help="hold range I of N contiguous ranges of --leases (default 0/1)")
    parser.add_argument("--http", type=http_arg, default=("127.0.0.1", 0), metavar="HOST:PORT",
                        help="where /health and /metrics are served, loopback only "
                             "(default 127.0.0.1:0, a free port)")
    parser.add_argument("--ready-file", type=Path, default=None, metavar="PATH",
                        help="write {pid, kind, health_url, metrics_url, ...} here once running")
    parser.add_argument("--duration", type=non_negative_seconds_arg, default=0.0, metavar="SECONDS",
                        help="stop after this long (default 0: until SIGTERM)")
    parser.add_argument("--setup-timeout", type=seconds_arg, default=SETUP_TIMEOUT, metavar="SECONDS",
                        help=f"give up setting the table up after this long (default {SETUP_TIMEOUT:g})")
    return parser


def shard_range(total: int, shard: tuple[int, int]) -> tuple[int, int]:
    """(first key number, count) of ``shard`` = (I, N) of ``total`` leases: contiguous
    ranges whose sizes differ by one at most."""
    index, count = shard
    first = index * total // count
    return first, (index + 1) * total // count - first


def _usage_field(message: str) -> str:
    match = re.match(r"argument ([^:]+):", message)
    if match:
        return match.group(1).split("/")[-1]
    if "required" in message:
        return message.rsplit(":", 1)[-1].strip().split(",")[0]
    return "arguments"


def _options_named(text: str) -> str:
    """``renew_every`` -> ``--renew-every`` in a message about FleetParams."""
    return re.sub(r"\b[a-z]+(?:_[a-z]+)+\b",
                  lambda m: _OPTION_OF.get(m.group(0), m.group(0)), text)


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Options from the command line.

    Raises:
        ConfigError: naming the option (``--expiry``, ``--shard``, ...), the value and the fix.
    """
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except UsageError as exc:
        message = str(exc)
        field = _usage_field(message)
        raise ConfigError(field, re.sub(r"^argument [^:]+: ", "", message),
                          "see `python -m chaos_dynamo.lease.reference --help`") from None
    ready: Path | None = ns.ready_file
    if ready is not None:
        ready = ready.absolute()
        if not ready.parent.is_dir():
            raise ConfigError("--ready-file", f"directory {ready.parent} does not exist",
                              "give a path in an existing directory")
    first, count = shard_range(ns.leases, ns.shard)
    if count < 1:
        raise ConfigError("--shard", f"shard {ns.shard[0]}/{ns.shard[1]} of {ns.leases} leases "
                          "holds none", "give at least as many --leases as shards")
    params = FleetParams(leases=count, renew_every=ns.renew_every, expiry=ns.expiry,
                         renew_timeout=ns.renew_timeout, renew_retry=ns.renew_retry,
                         renew_concurrency=ns.renew_concurrency, work_reads=ns.work_reads,
                         job_timeout=ns.job_timeout, first_key=first)
    try:
        validate(params)
    except ConfigError as exc:
        option = _OPTION_OF.get(exc.field, exc.field)
        fix = re.sub(rf"(?<![-\w]){re.escape(exc.field)}\b", option, _options_named(exc.fix))
        raise ConfigError(option, _options_named(exc.problem), fix) from None
    manager_args = tuple(ns.manager_arg)
    _manager(ns.manager, random.Random(0), manager_args)  # a bad setting fails here, not later
    return Options(manager=ns.manager, params=params, total_leases=ns.leases, shard=ns.shard,
                   manager_args=manager_args, table=ns.table, seed=ns.seed, http=ns.http,
                   ready_file=ready, duration=ns.duration, setup_timeout=ns.setup_timeout)


def _manager(name: str, rng: random.Random, settings: Sequence[tuple[str, float]]) -> Manager:
    try:
        return make_manager(name, rng, **dict(settings))
    except ConfigError as exc:
        field = "--manager-arg" + ("" if exc.field == "manager" else f" {exc.field}")
        raise ConfigError(field, exc.problem, exc.fix) from None


def owner_id(environ: Mapping[str, str]) -> str:
    """``<CHAOS_DYNAMO_SERVICE or 'leases'>-<CHAOS_DYNAMO_INSTANCE or 0>``."""
    return f"{environ.get('CHAOS_DYNAMO_SERVICE') or 'leases'}-{environ.get('CHAOS_DYNAMO_INSTANCE') or 0}"


# --- setup -------------------------------------------------------------------------------

def lease_items(params: FleetParams, owner: str, expires_at: float) -> list[dict[str, Any]]:
    return [{KEY: {"S": key}, OWNER: {"S": owner}, EXPIRES_AT: {"N": repr(float(expires_at))},
             VERSION: {"N": "1"}} for key in lease_keys(params)]


def setup(client: Any, table: str, params: FleetParams, owner: str, *, now: float,
          timeout: float, clock: Clock, stop: threading.Event) -> bool:
    """Create the table if missing, then write the shard's leases (version 1, expiry
    ``now + expiry``); False if stopped meanwhile.

    Raises:
        LabError: not done after ``timeout`` seconds, or refused for a reason a retry will
            not fix.
    """
    clock = StopClock(clock, stop)
    deadline = clock.monotonic() + timeout
    if not retrying(lambda: table_step(client, table, KEY), what=f"create table {table}",
                    timeout=timeout, deadline=deadline, clock=clock, stop=stop):
        return False
    todo = [{"PutRequest": {"Item": item}}
            for item in lease_items(params, owner, now + params.expiry)]

    def write() -> bool:
        while todo:
            batch = todo[:BATCH]
            answer = client.batch_write_item(RequestItems={table: batch})
            del todo[:BATCH]
            todo.extend(answer.get("UnprocessedItems", {}).get(table, []))
            if stop.is_set():
                return True
        return True

    done = retrying(write, what=f"write {params.leases} leases into {table}", timeout=timeout,
                    deadline=deadline, clock=clock, stop=stop)
    return done and not stop.is_set()


# --- health and metrics ------------------------------------------------------------------

def health(stats: FleetStats, manager: str) -> tuple[int, dict[str, Any]]:
    """``(200, body)`` while at least 99% of the leases are believed held, else 503."""
    fraction = stats.believed_live / stats.total if stats.total else 1.0
    healthy = fraction >= HEALTH_THRESHOLD
    body: dict[str, Any] = {
        "healthy": healthy, "kind": f"lease-{manager}", "live_fraction": round(fraction, 4),
        "threshold": HEALTH_THRESHOLD, "believed_live": stats.believed_live, "total": stats.total,
        "queued": stats.queued, "jobs_in_flight": stats.jobs_in_flight}
    if not healthy:
        body["reason"] = (f"{stats.believed_live} of {stats.total} leases held "
                          f"(below {HEALTH_THRESHOLD:.0%})")
    return (200 if healthy else 503), body


_GAUGES = {
    "believed_live": "Leases the fleet believes it holds.",
    "expired": "Leases expired or lost, waiting in the manager or in a job.",
    "queued": "Leases waiting in the manager's queue.",
    "in_flight_ops": "Ops sent and not answered yet.",
    "jobs_in_flight": "Re-establishment jobs running now.",
    "total": "Leases of this fleet (its shard).",
}
_COUNTERS = {
    "jobs_started": "Re-establishment jobs started.",
    "jobs_ok": "Jobs that re-acquired their lease.",
    "jobs_timed_out": "Jobs past their deadline.",
    "jobs_failed": "Jobs that failed otherwise (error, condition failed, held by another owner).",
    "jobs_shed": "Queue entries the manager dropped for age (re-offered later).",
    "renewals_ok": "Successful renewals.",
    "renewals_failed": "Failed renewals (timeout, error, condition failed).",
    "ops_sent": "Every op the fleet has sent to DynamoDB.",
}


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(stats: FleetStats, manager: Mapping[str, Any],
                   results: Mapping[tuple[str, str], int], late: int) -> str:
    """The fleet's stats, the driver's op results and the manager's ``describe()``, in the
    Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {PREFIX}{name} {help_text}")
        lines.append(f"# TYPE {PREFIX}{name} {kind}")
        lines.extend(f"{PREFIX}{name}{labels} {_number_text(value)}" for labels, value in samples)

    values = stats.as_dict()
    for name, help_text in _GAUGES.items():
        metric(name, "gauge", help_text, [("", values.get(name, 0))])
    fraction = stats.believed_live / stats.total if stats.total else 1.0
    metric("live_fraction", "gauge", "believed_live / total (/health wants >= 0.99).",
           [("", round(fraction, 6))])
    for name, help_text in _COUNTERS.items():
        metric(f"{name}_total", "counter", help_text, [("", values.get(name, 0))])
    metric("op_results_total", "counter", "Answers to ops, by op kind and outcome.",
           [(f'{{kind="{kind}",outcome="{outcome}"}}', n) for (kind, outcome), n in sorted(results.items())])
    metric("late_answers_total", "counter",
           "Answers that came after the op's timeout had been reported (dropped).", [("", late)])
    info = {k: v for k, v in manager.items() if isinstance(v, str)}
    labels = ",".join(f'{re.sub(r"[^a-zA-Z0-9_]", "_", k)}="{_label(v)}"' for k, v in sorted(info.items()))
    metric("manager_info", "gauge", "The re-establishment manager (its settings as labels).",
           [(f"{{{labels}}}" if labels else "", 1)])
    for key, value in sorted(manager.items()):
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int | float) and math.isfinite(value):
            name = "manager_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)
            metric(name, "gauge", f"The manager's {key!r} (describe()).", [("", value)])
    return "\n".join(lines) + "\n"


class StatusServer(RouteServer):
    """``GET /health`` and ``GET /metrics`` of a running fleet, on loopback, in a thread."""

    def __init__(self, host: str, port: int, driver: LabDriver[LeaseFleet], manager: str) -> None:
        def stats() -> tuple[FleetStats, dict[str, Any]]:
            return driver.read(lambda fleet: (fleet.stats(), fleet.manager.describe()))

        def get_health() -> tuple[int, str, str]:
            status, body = health(stats()[0], manager)
            return status, "application/json", json.dumps(body, sort_keys=True) + "\n"

        def get_metrics() -> tuple[int, str, str]:
            fleet_stats, described = stats()
            _, results, late = driver.counters()
            return 200, PROMETHEUS_TEXT, render_metrics(fleet_stats, described, results, late)

        super().__init__(host, port, {"/health": get_health, "/metrics": get_metrics})


# --- the process -------------------------------------------------------------------------

def run(options: Options, *, clock: Clock = REAL_CLOCK, stop: threading.Event | None = None,
        environ: Mapping[str, str] | None = None) -> tuple[int, bool]:
    """Set up and run the fleet until stopped; (exit code, whether every op thread ended).

    Installs SIGTERM/SIGINT handlers when called from the main thread.
    """
    environ = os.environ if environ is None else environ
    stop = stop if stop is not None else threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    check_endpoint(environ)
    watch_parent(environ, stop, clock)
    params, owner, kind = options.params, owner_id(environ), f"lease-{options.manager}"
    client = setup_client()
    try:
        started = clock.now()
        if not setup(client, options.table, params, owner, now=started,
                     timeout=options.setup_timeout, clock=clock, stop=stop):
            return 0, True
    finally:
        client.close()
    manager = _manager(options.manager, manager_rng(options.seed),
                       options.manager_args)
    fleet = LeaseFleet(params, manager, owner=owner, now=started,
                       rng=fleet_rng(options.seed))
    timeouts = {Kind.RENEW: params.renew_timeout, Kind.READ: params.job_timeout,
                Kind.ACQUIRE: params.job_timeout}
    driver = LabDriver(fleet, make_clients(timeouts), table=options.table, clock=clock)
    server = StatusServer(*options.http, driver, options.manager)
    server.start()
    ready_written = False
    try:
        keys = lease_keys(params)
        info = {"pid": os.getpid(), "kind": kind, "manager": options.manager,
                "health_url": f"{server.url}/health", "metrics_url": f"{server.url}/metrics",
                "table": options.table, "owner": owner, "leases": params.leases,
                "first_key": params.first_key, "seed": options.seed}
        if options.duration:
            def end_after() -> None:
                stop.wait(options.duration)
                stop.set()

            threading.Thread(target=end_after, name="duration", daemon=True).start()
        print(f"reference {kind} pid={os.getpid()} leases={params.leases} ({keys[0]}..{keys[-1]}) "
              f"manager={options.manager} table={options.table} owner={owner} seed={options.seed} "
              f"renew_every={params.renew_every:g} expiry={params.expiry:g} "
              f"job_timeout={params.job_timeout:g} health={info['health_url']}", flush=True)
        if options.ready_file is not None:
            write_ready_file(options.ready_file, info)
            ready_written = True
        clean = driver.run(stop, grace=SHUTDOWN_GRACE)
        s = driver.read(lambda f: f.stats())
        print(f"reference {kind} pid={os.getpid()} stopped: believed_live={s.believed_live}/{s.total} "
              f"renewals_ok={s.renewals_ok} jobs_ok={s.jobs_ok} jobs_timed_out={s.jobs_timed_out} "
              f"ops_sent={s.ops_sent}", flush=True)
        return 0, clean
    finally:
        stop.set()
        server.close()
        if ready_written and options.ready_file is not None:
            options.ready_file.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("lease reference", lambda: parse_args(argv), run, build_parser)


if __name__ == "__main__":
    sys.exit(main())
