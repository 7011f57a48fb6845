"""Reference services: real processes doing a steady DynamoDB workload, each retrying its way.

::

    python -m chaos_dynamo.services.reference --kind hardened --rate 5 --concurrency 8 \\
        --seed 0 --table chaos-dynamo-reference --http 127.0.0.1:0 --ready-file ready.json

Each process sends ``--rate`` logical calls per second (open loop: on schedule whatever
happens; PutItem and GetItem alternating on seeded keys) to DynamoDB through the endpoint's
*name* (``AWS_ENDPOINT_URL_DYNAMODB``, resolved through the lab DNS by the chaos-dynamo
shim when ``CHAOS_DYNAMO_DNS`` is set), with ``--concurrency`` worker threads. The kinds:

- ``naive``: a brand-new session and client for every attempt (so a new connection and a
  new DNS lookup), botocore retries off, and the application retries at once, forever,
  until the call succeeds. Unbounded work queue.
- ``legacy`` / ``standard`` / ``adaptive``: one client per process with
  ``Config(retries={"mode": kind})`` and botocore's per-service defaults for everything
  else; no application retries (a call that raises is an error). Unbounded work queue.
- ``hardened``: one client with botocore retries off and bounded timeouts; the application
  retries with :mod:`chaos_dynamo.services.hardened` (tenacity, 4 attempts at most, capped
  exponential backoff with full jitter, a token-bucket retry budget, a circuit breaker).
  Bounded work queue (capacity = concurrency): a call that finds it full is shed.

It serves ``GET /health`` and ``GET /metrics`` on ``--http`` (loopback only; see
:mod:`chaos_dynamo.services.workload`) and writes ``--ready-file`` (JSON: pid, kind,
health_url, metrics_url) once it serves and its table exists. SIGTERM or SIGINT stops the
schedule and exits 0 within about two seconds: workers get one second to finish their
call; one stuck in a long botocore backoff sleep is not waited for (the process ends with
``os._exit(0)`` after flushing its output; the shim's call log is written line by line, so
nothing is lost).

It talks to the lab only: the DynamoDB endpoint must be set and resolve to loopback
addresses (or not resolve at all while the lab resolver shim is on: an outage).
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import random
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlparse

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.errors import ChaosDynamoError, ConfigError, LabError, SafetyError
from chaos_dynamo.services.hardened import (
    CircuitBreaker,
    FullJitter,
    HardenedCaller,
    TokenBucket,
    is_retryable,
)
from chaos_dynamo.services.workload import (
    Call,
    CallPlan,
    Driver,
    Metrics,
    OpenLoop,
    StatusServer,
    Stopped,
    http_arg,
    seed_arg,
    table_arg,
    write_ready_file,
)

__all__ = ["KINDS", "Options", "main", "parse_args", "run"]

KINDS = ("naive", "legacy", "standard", "adaptive", "hardened")
DEFAULT_TABLE = "chaos-dynamo-reference"
SETUP_TIMEOUT = 30.0
SHUTDOWN_GRACE = 1.0
PROGRESS_EVERY = 10.0
HARDENED_TIMEOUTS = {"connect_timeout": 2.0, "read_timeout": 5.0}

_Options = TypeVar("_Options")



@dataclass(frozen=True)
class Options:
    kind: str
    rate: float = 5.0
    concurrency: int = 8
    seed: int = 0
    table: str = DEFAULT_TABLE
    http: tuple[str, int] = ("127.0.0.1", 0)
    ready_file: Path | None = None
    duration: float = 0.0
    setup_timeout: float = SETUP_TIMEOUT


# --- command line ------------------------------------------------------------------------

class UsageError(Exception):
    """An argparse error, raised instead of exiting (so a reference process's parse_args can
    turn it into a ConfigError naming the option)."""


class RaisingParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def seconds_arg(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds > 0")
    return value


def non_negative_seconds_arg(text: str) -> float:
    """An argparse type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds >= 0")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number > 0")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0 (0: run until SIGTERM)")
    return value


def _concurrency(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of workers") from None
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"{value} must be between 1 and 1024")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,  # an abbreviation would slip past the supervisor's check of reserved options
        prog="python -m chaos_dynamo.services.reference",
        description="A reference service: a steady open-loop DynamoDB workload through the "
                    "lab endpoint's name, retrying the way --kind says.",
        epilog="The endpoint, region and credentials come from the environment "
               "(`chaos-dynamo lab env`). SIGTERM/SIGINT: stop and exit 0.")
    parser.add_argument("--kind", required=True, choices=KINDS,
                        help="how it retries (see the module docstring)")
    parser.add_argument("--rate", type=_positive_float, default=5.0,
                        help="logical calls per second, this instance (default 5)")
    parser.add_argument("--concurrency", type=_concurrency, default=8,
                        help="worker threads (default 8; also the hardened queue's capacity)")
    parser.add_argument("--seed", type=seed_arg, default=0, help="seed of the keys (default 0)")
    # In a lab namespace the default table carries its prefix ($CHAOS_DYNAMO_TABLE_PREFIX).
    parser.add_argument("--table", type=table_arg, default=os.environ.get("CHAOS_DYNAMO_TABLE_PREFIX", "") + DEFAULT_TABLE,
                        help=f"table, created if missing (default {DEFAULT_TABLE}, after $CHAOS_DYNAMO_TABLE_PREFIX)")
    parser.add_argument("--http", type=http_arg, default=("127.0.0.1", 0), metavar="HOST:PORT",
                        help="where /health and /metrics are served, loopback only "
                             "(default 127.0.0.1:0, a free port)")
    parser.add_argument("--ready-file", type=Path, default=None, metavar="PATH",
                        help="write {pid, kind, health_url, metrics_url} here once serving")
    parser.add_argument("--duration", type=_non_negative_float, default=0.0, metavar="SECONDS",
                        help="stop after this long (default 0: until SIGTERM)")
    parser.add_argument("--setup-timeout", type=_positive_float, default=SETUP_TIMEOUT,
                        metavar="SECONDS",
                        help=f"give up creating the table after this long (default {SETUP_TIMEOUT:g})")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Options from the command line; argparse's usage error (exit 2) for a bad value."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    ready: Path | None = ns.ready_file
    if ready is not None:
        ready = ready.absolute()
        if not ready.parent.is_dir():
            parser.error(f"argument --ready-file: directory {ready.parent} does not exist")
    return Options(kind=ns.kind, rate=ns.rate, concurrency=ns.concurrency, seed=ns.seed,
                   table=ns.table, http=ns.http, ready_file=ready, duration=ns.duration,
                   setup_timeout=ns.setup_timeout)


# --- safety ------------------------------------------------------------------------------

def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _in_zones(host: str, zones: str) -> bool:
    name = host.lower().rstrip(".")
    wanted = [z.strip().lower().strip(".") for z in zones.split(",") if z.strip()]
    return any(name == z or name.endswith("." + z) for z in wanted)


def check_endpoint(environ: Mapping[str, str]) -> str:
    """The DynamoDB endpoint URL, after checking it leads to the lab only.

    Raises:
        SafetyError: no endpoint is set (boto3 would call real AWS), its host is a name
            outside $CHAOS_DYNAMO_ZONES, resolves to a non-loopback address, or does not
            resolve while the lab shim is off.
    """
    url = environ.get("AWS_ENDPOINT_URL_DYNAMODB") or environ.get("AWS_ENDPOINT_URL")
    fix = "run it with the lab's environment (`eval \"$(chaos-dynamo lab env)\"`)"
    if not url:
        raise SafetyError(f"AWS_ENDPOINT_URL_DYNAMODB is not set, so boto3 would call real AWS; {fix}")
    parsed = urlparse(url)
    host = parsed.hostname or ""
    try:
        port = parsed.port or 80
    except ValueError:
        raise SafetyError(f"AWS_ENDPOINT_URL_DYNAMODB={url!r} has a bad port; {fix}") from None
    if not _is_address(host) and host != "localhost" and not _in_zones(host, environ.get("CHAOS_DYNAMO_ZONES", "")):
        # Without the lab's zones the shim sends a name the lab DNS cannot answer (it is
        # down, say) to the system resolver: the real endpoint. A reference service can
        # storm, so it only ever resolves its endpoint through the lab.
        raise SafetyError(f"{host} (AWS_ENDPOINT_URL_DYNAMODB) is not inside the lab's zones "
                          f"(CHAOS_DYNAMO_ZONES={environ.get('CHAOS_DYNAMO_ZONES', '')!r}), so a lookup "
                          f"could reach the real DNS; {fix}")
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except socket.gaierror:
        from chaos_dynamo import shim

        if shim.active():
            return url  # a lab name that resolves to nothing: an outage, which is fine
        raise SafetyError(f"{host} (AWS_ENDPOINT_URL_DYNAMODB) does not resolve and the lab "
                          f"resolver shim is off (CHAOS_DYNAMO_DNS unset); {fix}") from None
    outside = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if outside:
        raise SafetyError(f"{host} (AWS_ENDPOINT_URL_DYNAMODB) resolves to {outside}, not to "
                          f"loopback: reference services talk to the lab only; {fix}")
    return url


# --- clients and executors ---------------------------------------------------------------

class StopClock:
    """A clock whose ``sleep`` returns early once ``stop`` is set."""

    def __init__(self, clock: Clock, stop: threading.Event) -> None:
        self._clock = clock
        self._stop = stop

    def now(self) -> float:
        return self._clock.now()

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)


def _config(**kwargs: Any) -> Any:
    from botocore.config import Config

    return Config(**kwargs)


def _perform(client: Any, table: str, call: Call) -> None:
    if call.operation == "PutItem":
        client.put_item(TableName=table, Item={"pk": {"S": call.key}, "n": {"N": str(call.index)}})
    else:
        client.get_item(TableName=table, Key={"pk": {"S": call.key}})


class _FreshClients:
    """A brand-new boto3 session and client per call of :meth:`new`.

    Each session gets its own botocore loader, but the loaders share one cache of parsed
    service models (``instance_cache`` keeps it in ``_cache``): re-reading the JSON models
    for every attempt would cost ~140 ms of CPU instead of ~27 ms, and the storm would be
    the CPU's, not the retry policy's. Everything else (credentials, config, connection
    pool, so the DNS lookup) is new each time.
    """

    def __init__(self, config: Any) -> None:
        import botocore.loaders

        shared: dict[Any, Any] = {}

        class SharedCacheLoader(botocore.loaders.Loader):
            def __init__(self) -> None:
                super().__init__()
                self._cache = shared

        self._loader_class = SharedCacheLoader
        self._config = config

    def new(self) -> Any:
        import boto3.session
        import botocore.session

        core = botocore.session.Session()
        core.register_component("data_loader", self._loader_class())
        return boto3.session.Session(botocore_session=core).client("dynamodb", config=self._config)


def naive_executor(table: str, metrics: Metrics, stop: threading.Event) -> Callable[[Call], None]:
    """New client per attempt; retry at once, forever, until success (or shutdown)."""
    clients = _FreshClients(_config(retries={"total_max_attempts": 1}))
    clients.new().close()  # warm the shared model cache before the workers start

    def execute(call: Call) -> None:
        while True:
            if stop.is_set():
                raise Stopped()
            metrics.record_attempt()
            client = clients.new()
            try:
                _perform(client, table, call)
                return
            except Exception:  # the naive service retries everything, at once
                continue
            finally:
                client.close()

    return execute


def botocore_executor(kind: str, table: str, concurrency: int,
                      metrics: Metrics) -> Callable[[Call], None]:
    """One client, botocore's ``kind`` retry mode with its defaults; no application retries.

    Attempts are counted by a ``before-send`` hook: botocore emits it once per attempt,
    including attempts that then fail to resolve or connect, so the metric is exact.
    """
    import boto3

    # max_pool_connections only so that more than 10 workers do not churn connections;
    # at the default concurrency it is botocore's default (10).
    client = boto3.client("dynamodb", config=_config(
        retries={"mode": kind}, max_pool_connections=max(10, concurrency)))

    def count(**_: Any) -> None:
        metrics.record_attempt()

    client.meta.events.register("before-send.dynamodb", count)

    def execute(call: Call) -> None:
        _perform(client, table, call)

    return execute


def hardened_executor(table: str, concurrency: int, metrics: Metrics, seed: int, clock: Clock,
                      stop: threading.Event) -> tuple[Callable[[Call], None], CircuitBreaker]:
    """One client, botocore retries off; tenacity + retry budget + circuit breaker."""
    import boto3

    client = boto3.client("dynamodb", config=_config(
        retries={"total_max_attempts": 1}, max_pool_connections=max(10, concurrency),
        **HARDENED_TIMEOUTS))
    breaker = CircuitBreaker(failure_threshold=5, cool_down=2.0, clock=clock)
    bucket = TokenBucket(capacity=10.0, per_success=0.1, per_second=0.2, clock=clock)

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise Stopped()

    caller = HardenedCaller(bucket, breaker, max_attempts=4,
                            wait=FullJitter(multiplier=0.1, maximum=2.0,
                                            rng=random.Random(f"hardened-backoff-{seed}")),
                            sleep=sleep, on_attempt=metrics.record_attempt)

    def execute(call: Call) -> None:
        caller.call(lambda: _perform(client, table, call))

    return execute, breaker


# --- table -------------------------------------------------------------------------------

def setup_client() -> Any:
    """The client :func:`ensure_table` uses: no botocore retries, short timeouts."""
    import boto3

    return boto3.client("dynamodb", config=_config(
        retries={"total_max_attempts": 1}, connect_timeout=2.0, read_timeout=5.0))


def aws_code(error: Exception) -> str:
    """The AWS error code of a botocore ``ClientError``; "" for anything else."""
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def table_step(client: Any, table: str, key: str = "pk") -> bool:
    """One step of creating ``table`` (hash key ``key``, a string): True once it is ACTIVE.

    Another instance creating the same table at the same time is fine.
    """
    try:
        status = client.describe_table(TableName=table)["Table"]["TableStatus"]
    except Exception as exc:
        if aws_code(exc) != "ResourceNotFoundException":
            raise
        try:
            client.create_table(
                TableName=table, BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}])
        except Exception as again:
            if aws_code(again) != "ResourceInUseException":  # another instance won
                raise
        return False
    return bool(status == "ACTIVE")


def retrying(action: Callable[[], bool], *, what: str, timeout: float, clock: Clock,
             stop: threading.Event, deadline: float | None = None) -> bool:
    """Call ``action`` until it returns True, retrying what a later attempt may not see (a
    lab in an outage, throttling) for up to ``timeout`` seconds (or until ``deadline`` on
    ``clock.monotonic``). False if stopped meanwhile.

    Raises:
        LabError: still not done in time, or refused for a reason a retry will not fix.
    """
    deadline = clock.monotonic() + timeout if deadline is None else deadline
    last: Exception | None = None
    while not stop.is_set():
        try:
            if action():
                return True
            last = None
        except Exception as exc:
            if not is_retryable(exc):
                raise LabError(f"cannot {what}: {exc}") from None
            last = exc
        if clock.monotonic() >= deadline:
            why = f"last error: {last}" if last else "it was not done"
            raise LabError(
                f"could not {what} in {timeout:g} s ({why}); is the lab up and its endpoint "
                "resolving (`chaos-dynamo lab status`)? Is AWS_ENDPOINT_URL_DYNAMODB the lab's "
                "(`chaos-dynamo lab env`)? --setup-timeout waits longer")
        clock.sleep(0.5 if last else 0.1)
    return False


def ensure_table(client: Any, table: str, *, timeout: float, clock: Clock,
                 stop: threading.Event, key: str = "pk") -> bool:
    """Create ``table`` if missing and wait until it is ACTIVE (see :func:`retrying`)."""
    return retrying(lambda: table_step(client, table, key), what=f"create table {table}",
                    timeout=timeout, clock=clock, stop=stop)


# --- the service -------------------------------------------------------------------------

def _progress(metrics: Metrics, stop: threading.Event) -> None:
    while not stop.wait(PROGRESS_EVERY):
        s = metrics.snapshot()
        print(f"reference {s.kind} pid={os.getpid()}: ok={s.ok} error={s.error} shed={s.shed} "
              f"attempts={s.attempts} inflight={s.inflight} queue={s.queue_depth} "
              f"breaker_open={int(s.breaker_open)}", flush=True)


PARENT_ENV = "CHAOS_DYNAMO_EXIT_WITH_PARENT"
"""Set by the supervisor when a Chaos Toolkit run starts the service: the pid of that run.
The service stops when that process is gone (killed without running its controls), so a
retry storm never outlives the experiment that started it."""


def watch_parent(environ: Mapping[str, str], stop: threading.Event, clock: Clock) -> None:
    """Stop (set ``stop``) once the process named by $CHAOS_DYNAMO_EXIT_WITH_PARENT is not
    this process's parent any more; nothing when the variable is unset or not a pid."""
    try:
        parent = int(environ.get(PARENT_ENV, ""))
    except ValueError:
        return

    def watch() -> None:
        while not stop.is_set():
            if os.getppid() != parent:
                print(f"the process that started this service ({parent}) is gone: stopping", flush=True)
                stop.set()
                return
            clock.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run(options: Options, *, clock: Clock = REAL_CLOCK,
        stop: threading.Event | None = None) -> tuple[int, bool]:
    """Run the service until stopped; return (exit code, whether every worker ended).

    Installs SIGTERM/SIGINT handlers when called from the main thread.
    """
    stop = stop if stop is not None else threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    check_endpoint(os.environ)
    watch_parent(os.environ, stop, clock)
    sclock = StopClock(clock, stop)
    breaker: CircuitBreaker | None = None
    metrics = Metrics(options.kind, clock, breaker_open=lambda: breaker is not None and breaker.is_open)
    server = StatusServer(*options.http, metrics)
    server.start()
    ready_written = False
    try:
        client = setup_client()
        try:
            if not ensure_table(client, options.table, timeout=options.setup_timeout,
                                clock=sclock, stop=stop):
                return 0, True
        finally:
            client.close()
        execute: Callable[[Call], None]
        if options.kind == "naive":
            execute = naive_executor(options.table, metrics, stop)
        elif options.kind == "hardened":
            execute, breaker = hardened_executor(options.table, options.concurrency, metrics,
                                                 options.seed, sclock, stop)
        else:
            execute = botocore_executor(options.kind, options.table, options.concurrency, metrics)
        capacity = options.concurrency if options.kind == "hardened" else None
        driver = Driver(execute, metrics, concurrency=options.concurrency, capacity=capacity,
                        clock=clock, stop=stop)
        metrics.queue_depth = driver.depth
        driver.start()
        info = {"pid": os.getpid(), "kind": options.kind, "health_url": f"{server.url}/health",
                "metrics_url": f"{server.url}/metrics", "table": options.table,
                "rate": options.rate, "concurrency": options.concurrency, "seed": options.seed}
        if options.ready_file is not None:
            write_ready_file(options.ready_file, info)
            ready_written = True
        print(f"reference {options.kind} pid={os.getpid()} rate={options.rate:g}/s "
              f"concurrency={options.concurrency} seed={options.seed} table={options.table} "
              f"health={info['health_url']}", flush=True)
        threading.Thread(target=_progress, args=(metrics, stop), name="progress", daemon=True).start()
        OpenLoop(options.rate, driver.submit, plan=CallPlan(options.seed), clock=sclock, stop=stop,
                 duration=options.duration or None).run()
        stop.set()
        return 0, driver.join(SHUTDOWN_GRACE)
    finally:
        stop.set()
        server.close()
        if ready_written and options.ready_file is not None:
            options.ready_file.unlink(missing_ok=True)


def run_main(label: str, parse: Callable[[], _Options], run: Callable[[_Options], tuple[int, bool]],
             build_parser: Callable[[], argparse.ArgumentParser]) -> int:
    """A reference process's ``main``: ``run(parse())``, its exit code.

    A ConfigError from ``parse`` prints the usage and ``<label>: error: ...`` to stderr
    (exit 2); a ChaosDynamoError from ``run`` prints ``<label>: error: ...`` (exit 1). When
    ``run`` says a thread did not end (one still inside botocore, e.g. a legacy-mode backoff
    sleep of up to 12.8 s), the process ends with ``os._exit`` after flushing its output
    rather than wait for it: everything worth keeping is already written.
    """
    try:
        options = parse()
    except ConfigError as exc:
        build_parser().print_usage(sys.stderr)
        print(f"{label}: error: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        code, clean = run(options)
    except ChaosDynamoError as exc:
        print(f"{label}: error: {exc}", file=sys.stderr, flush=True)
        return 1
    if not clean:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("reference", lambda: parse_args(argv), run, build_parser)


if __name__ == "__main__":
    sys.exit(main())
