"""``chaos-dynamo``: the lab's command line.

    chaos-dynamo lab up [--detach]      start a lab (foreground until Ctrl-C, or in the background)
    chaos-dynamo lab env                export lines for a shell or CI step: eval "$(chaos-dynamo lab env)"
    chaos-dynamo lab status [--json]    addresses and counters
    chaos-dynamo lab doctor [--repair]  what an interrupted or crashed run left behind; repair it
    chaos-dynamo lab down               stop exactly what `lab up --detach` started, and its services
    chaos-dynamo service start NAME     run a reference service (--kind K) or your program (-- CMD...)
    chaos-dynamo service list [--json]  the recorded services, their pids and health
    chaos-dynamo service stop NAME      stop a service (--all: every one)
    chaos-dynamo run EXPERIMENT         run an experiment on a lab with the real `chaos` CLI and judge it
    chaos-dynamo explore [--design D]   enumerate Planner/Enactor interleavings in memory; find the race
    chaos-dynamo replay TRACE           replay an explored interleaving on a lab, step by step
    chaos-dynamo verify [PATHS]...      CI gate: run experiments, judge each, write JUnit XML and a summary
    chaos-dynamo report JOURNAL... -o F one static HTML page: verdict table and timelines, fault windows shaded
    chaos-dynamo audit [--] COMMAND...  pre-release dependency audit: AWS dependencies and their risks, gated
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlparse

import click

from chaos_dynamo import __version__
from chaos_dynamo.clock import REAL_CLOCK, wait_until
from chaos_dynamo.errors import ChaosDynamoError, ConfigError, LabError
from chaos_dynamo.lab.state import LabInfo, read_state, remove_state, state_path, write_state

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _seconds(low: float, high: float) -> Any:
    """A callback for a ``type=float`` duration option: ``low`` to ``high`` seconds (click's
    FloatRange lets NaN through, and a negative wait would mean "kill at once")."""

    def check(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
        if value is not None and not low <= value <= high:  # also false for NaN
            raise click.BadParameter(f"{value} is out of range; give {low:g} to {high:g} seconds")
        return value

    return check


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


@click.group()
@click.version_option(__version__, prog_name="chaos-dynamo")
def main() -> None:
    """Rehearse the us-east-1 DynamoDB DNS outage on a local lab."""


# --- lab -----------------------------------------------------------------------------------

@main.group()
def lab() -> None:
    """Start, inspect and stop the local lab (emulator, Route 53 front, DNS, LB fleet)."""


_UP_OPTIONS = [
    click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML topology file."),
    click.option("--seed", type=int,
                 help="Seed for the topology and every random choice (default 0; with --config, set it in the file)."),
    click.option("--region", help="Region name (default us-east-1; with --config, set it in the file)."),
    click.option("--host", help="Loopback address for the API and DNS (default 127.0.0.1)."),
    click.option("--api-port", type=int, help="Port of the lab's AWS API (default: a free port)."),
    click.option("--dns-port", type=int, help="Port of the lab DNS, UDP and TCP (default: a free port)."),
    click.option("--lb-port", type=int, help="Port shared by the load balancers (default: a free port)."),
    click.option("--backend", help="http://127.0.0.1:PORT of a moto_server or LocalStack on this machine "
                                   "(default: embedded moto)."),
    click.option("--propagation-delay", type=float, help="Seconds until a Route 53 change is INSYNC."),
    click.option("--state-file", type=click.Path(dir_okay=False), help="Where the running lab is recorded."),
    click.option("--namespaces", help="Isolated namespaces for experiments side by side: a count (2: ns1, ns2) "
                                      "or names (team-a,team-b); each gets its own zone, endpoint, plan table "
                                      "and three load balancers (docs/namespaces.md)."),
]


def _with_up_options(func: Any) -> Any:
    for option in reversed(_UP_OPTIONS):
        func = option(func)
    return func


def _topology(config_path: str | None, **overrides: Any) -> Any:
    from chaos_dynamo.config import load_topology

    return load_topology(config_path, **overrides)


def _running_lab(path: Path) -> LabInfo | None:
    """The lab recorded in ``path`` if its process is still that lab; a stale file is removed."""
    try:
        info = read_state(path)
    except LabError:
        return None
    if _exists(info.pid) and _is_our_lab(info, path):
        return info
    remove_state(path)
    return None


def _exists(pid: int) -> bool:
    """Whether a live process has ``pid`` (ours to signal or not); a zombie has exited."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: "pid (comm) S ...", the state after the last ')'
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_our_lab(info: LabInfo, path: Path) -> bool:
    """Whether ``info.pid`` is still the lab the state file at ``path`` describes.

    A pid can be recycled by any program, so it is confirmed before anyone signals it:
    first by asking the lab's API which pid serves it; when the API does not answer, by
    the process's command line, which for a lab that `lab up --detach` started holds
    ``chaos_dynamo.cli`` and the state file's path.
    """
    host = urlparse(info.api_url).hostname or ""
    from chaos_dynamo.config import is_loopback_host

    if is_loopback_host(host):  # never ask anything off this machine
        from chaos_dynamo.endpoint._lab import fetch_info

        try:
            return fetch_info(info.api_url, timeout=2.0).pid == info.pid
        except LabError:
            pass
    cmdline = _cmdline(info.pid)
    return cmdline is not None and "chaos_dynamo.cli" in cmdline and str(path) in cmdline


def _cmdline(pid: int) -> str | None:
    """The command line of ``pid`` (arguments joined by spaces), or None when unknown."""
    proc = Path(f"/proc/{pid}/cmdline")
    try:
        return proc.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        if Path("/proc/self").exists():  # Linux: the process is gone
            return None
    except OSError:
        return None
    try:  # no /proc (macOS, BSD): ask ps
        result = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True,
                                text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


@lab.command("up")
@_with_up_options
@click.option("--detach", is_flag=True, help="Run in the background; `lab down` stops it.")
@click.option("--exit-with-parent", type=int, default=None, hidden=True,
              help="Stop when the process with this pid, this lab's parent, is gone (verify's own labs).")
def lab_up(config_path: str | None, seed: int | None, region: str | None, host: str | None,
           api_port: int | None, dns_port: int | None, lb_port: int | None, backend: str | None,
           propagation_delay: float | None, state_file: str | None, namespaces: str | None, detach: bool,
           exit_with_parent: int | None) -> None:
    """Start a lab. Prints its addresses and the `export` lines to reach it."""
    if detach and exit_with_parent is not None:
        _fail("--exit-with-parent and --detach exclude each other: a detached lab outlives "
              "the command that started it", EXIT_USAGE)
    path = state_path(state_file)
    try:
        topology = _topology(config_path, seed=seed, region=region, host=host, api_port=api_port,
                             dns_port=dns_port, lb_port=lb_port, backend=backend,
                             propagation_delay=propagation_delay, namespaces=namespaces)
    except ChaosDynamoError as exc:
        _fail(str(exc), EXIT_USAGE)
    running = _running_lab(path)
    if running is not None:
        _fail(f"a lab is already running (pid {running.pid}, state file {path}); "
              "run `chaos-dynamo lab down` first, or use another --state-file", EXIT_FAILED)
    if detach:
        _detach(path, config_path=config_path, seed=seed, region=region, host=host, api_port=api_port,
                dns_port=dns_port, lb_port=lb_port, backend=backend, propagation_delay=propagation_delay,
                namespaces=namespaces)
        return
    _serve(topology, path, exit_with_parent)


def _serve(topology: Any, path: Path, parent: int | None = None) -> None:
    """Run the lab until SIGTERM/SIGINT or, with ``parent``, until that process is no longer
    this one's parent (it died, even by SIGKILL, and this process was handed to init or a
    subreaper): a lab started for one verify run never outlives it."""
    from chaos_dynamo.lab.lab import Lab

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = REAL_CLOCK.monotonic()
    the_lab = Lab(topology)
    try:
        info = the_lab.start()
    except ChaosDynamoError as exc:
        _fail(f"the lab did not start: {exc}")
    except OSError as exc:
        _fail(f"the lab did not start: {exc} (is a port in use? omit the --*-port options to pick free ones)")
    try:
        write_state(info, path)
        elapsed = REAL_CLOCK.monotonic() - started
        click.echo(_summary(info, path, elapsed))
        sys.stdout.flush()
        # Wake up now and then: a signal the kernel hands to another thread does not interrupt
        # a wait without timeout, and the handler only runs once this thread is back in Python.
        while not stop.wait(0.5):
            if parent is not None and os.getppid() != parent:
                click.echo(f"the process that started this lab ({parent}) is gone: stopping", err=True)
                break
    finally:
        click.echo("stopping the lab...", err=True)
        try:
            _stop_services(path)
        finally:
            the_lab.stop()
            remove_state(path, pid=os.getpid())


def _detach(path: Path, **options: Any) -> None:
    """Start ``lab up`` with the same options in a new session and wait until it is ready.

    The child's arguments are built from the parsed options, not copied from ``sys.argv``
    (which is another program's under click's CliRunner or when called from Python). The
    state file's path is always passed: `lab down` looks for it in the child's command line.
    """
    args = ["lab", "up", "--state-file", str(path)]
    for name, value in options.items():
        if value is None:
            continue
        if name == "config_path":
            args += ["--config", str(Path(value).absolute())]
        else:
            args += [f"--{name.replace('_', '-')}", str(value)]
    path.parent.mkdir(parents=True, exist_ok=True)
    log_path = path.with_suffix(".log")
    with open(log_path, "wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "chaos_dynamo.cli", *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def ready() -> bool:
        if child.poll() is not None:
            return True
        try:
            return read_state(path).pid == child.pid
        except LabError:
            return False

    wait_until(ready, timeout=120, interval=0.05)
    if child.poll() is not None or not ready():
        if child.poll() is None:
            child.terminate()
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        _fail(f"the lab did not start (see {log_path}):\n{tail}")
    info = read_state(path)
    click.echo(f"lab running in the background (pid {info.pid}); log: {log_path}")
    click.echo(_summary(info, path, None))


def _summary(info: LabInfo, path: Path, elapsed: float | None) -> str:
    lines = [
        f"chaos-dynamo lab up{f' in {elapsed:.2f} s' if elapsed is not None else ''} "
        f"({'embedded moto' if info.embedded else 'backend ' + info.emulator_url})",
        f"  AWS API (Route 53 with AWS rules, DynamoDB, ...): {info.api_url}",
        f"  DNS (UDP+TCP): {info.dns_host}:{info.dns_port}   "
        f"try: dig @{info.dns_host} -p {info.dns_port} {info.primary_endpoint.name}",
        f"  load balancers on port {info.lb_port}: "
        + ", ".join(f"{lb['name']}={lb['address']}" for lb in info.load_balancers),
        f"  endpoints: {', '.join(e.name for e in info.endpoints)}",
        f"  DynamoDB for services: {info.dynamodb_url()}",
        *(f"  namespace {ns.name}: {', '.join(e.name for e in ns.endpoints)}, plan table {ns.plan_table}, "
          f"load balancers {', '.join(str(lb['name']) for lb in ns.load_balancers)}"
          for ns in info.namespaces),
        f"  state file: {path}",
        "  reach it from a shell: eval \"$(chaos-dynamo lab env)\"",
    ]
    return "\n".join(lines)


@lab.command("down")
@click.option("--state-file", type=click.Path(dir_okay=False))
@click.option("--timeout", type=float, callback=_seconds(0.1, 3600), default=20.0, show_default=True,
              help="Seconds to wait for exit.")
def lab_down(state_file: str | None, timeout: float) -> None:
    """Stop the lab that `lab up --detach` started (and only that), and the services
    recorded next to it (`service start`)."""
    path = state_path(state_file)
    _stop_services(path)
    try:
        info = read_state(path)
    except LabError:
        click.echo(f"no lab is running (no state file at {path})")
        return
    if not _exists(info.pid):
        remove_state(path)
        click.echo(f"the lab (pid {info.pid}) had already exited; removed its state file")
        return
    if not _is_our_lab(info, path):
        remove_state(path)
        click.echo(f"the lab (pid {info.pid}) had already exited and its pid now belongs to another "
                   "program, which was left alone; removed the state file")
        return
    _signal(info.pid, signal.SIGTERM)
    if not wait_until(lambda: not _exists(info.pid), timeout=timeout, interval=0.05):
        _signal(info.pid, signal.SIGKILL)
        wait_until(lambda: not _exists(info.pid), timeout=5, interval=0.05)
        click.echo(f"the lab (pid {info.pid}) did not stop in {timeout} s and was killed", err=True)
    remove_state(path)
    click.echo(f"lab stopped (pid {info.pid})")


def _stop_services(path: Path) -> None:
    """Stop every service recorded next to the lab's state file (before the lab they use)."""
    from chaos_dynamo.services import supervisor

    try:
        results = supervisor.stop_all(path)
    except ChaosDynamoError as exc:
        _fail(f"could not stop the lab's services: {exc}")
    for result in results:
        click.echo(_stopped_line(result))


def _stopped_line(result: dict[str, Any]) -> str:
    if not result["was_running"]:
        return f"service {result['service']} had already exited; removed its record"
    killed = f" ({result['killed']} needed SIGKILL)" if result["killed"] else ""
    return f"service {result['service']} stopped ({result['stopped']} instance(s), pids {result['pids']}){killed}"


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # it exited by itself meanwhile
    except PermissionError:
        _fail(f"not allowed to signal the lab (pid {pid}): it runs as another user; run "
              "`chaos-dynamo lab down` as that user (the state file is left in place)")


def _lab_status(info: LabInfo) -> dict[str, Any]:
    from chaos_dynamo.endpoint._lab import http_json

    result: dict[str, Any] = http_json(f"{info.api_url}/_chaos_dynamo/status")
    return result


@lab.command("doctor")
@click.option("--state-file", type=click.Path(), help="The lab's state file (default: as `lab up`).")
@click.option("--repair", "do_repair", is_flag=True,
              help="Repair what is found: stop orphans, remove a stale state file, restore the lab.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def lab_doctor(state_file: str | None, do_repair: bool, as_json: bool) -> None:
    """Find (and with --repair, repair) what an interrupted or crashed run left: a stale state
    file, orphan labs, services and chaos runs (and their sockets), endpoints off the newest
    plan, LB faults, DynamoDB capacity, a running or stuck control plane, armed failpoints.

    Exits 0 when nothing is left (or all was repaired), 1 when leftovers were found (without
    --repair), 2 on bad input, 3 when a repair failed. See docs/doctor.md.
    """
    from chaos_dynamo.lab.doctor import main as doctor_main

    sys.exit(doctor_main(state_file, do_repair=do_repair, as_json=as_json, echo=click.echo))


@lab.command("status")
@click.option("--state-file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def lab_status(state_file: str | None, as_json: bool) -> None:
    """Is the lab running? Its addresses, LB faults and DNS/LB/Route 53 counters."""
    path = state_path(state_file)
    info = _running_lab(path)
    if info is None:
        if as_json:
            click.echo(json.dumps({"running": False, "state_file": str(path)}))
        else:
            click.echo(f"no lab is running (state file {path})")
        sys.exit(EXIT_FAILED)
    try:
        status = _lab_status(info)
    except LabError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(status, indent=2, sort_keys=True))
        return
    lab_part = status["lab"]
    click.echo(f"lab running: pid {lab_part['pid']}, API {lab_part['api_url']}, DNS {lab_part['dns']}, "
               f"LB port {lab_part['lb_port']}")
    dns = status["counters"]["dns"]
    click.echo(f"  DNS queries: {dns.get('total', 0)} {dns.get('by_rcode', {})}")
    for name, lb in status["load_balancers"].items():
        counts = status["counters"]["lb"].get(name, {})
        faults = {k: v for k, v in lb.get("faults", {}).items() if v not in (False, 0, 0.0, None)}
        click.echo(f"  {name} {lb['address']} weight {lb['weight']} {lb['az']}: "
                   f"{counts.get('requests', 0)} requests{'  faults: ' + str(faults) if faults else ''}")
    click.echo(f"  Route 53 changes: {status['counters']['route53']}")


@lab.command("digest")
@click.option("--state-file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="The digest and the state it is taken of, as JSON.")
def lab_digest(state_file: str | None, as_json: bool) -> None:
    """A SHA-256 of the lab's state: records, health checks, plans, LB faults, capacity and
    control plane (not its counters). Equal before and after shows nothing changed."""
    from chaos_dynamo.lab.digest import digest_of, snapshot

    path = state_path(state_file)
    info = _running_lab(path)
    if info is None:
        _fail(f"no lab is running (state file {path}); start one with `chaos-dynamo lab up --detach`")
    try:
        state = snapshot(info)
    except ChaosDynamoError as exc:
        _fail(str(exc))
    digest = digest_of(state)
    click.echo(json.dumps({"digest": digest, "state": state}, indent=2, sort_keys=True, default=str)
               if as_json else digest)


@lab.command("env")
@click.option("--state-file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["shell", "dotenv", "json"]), default="shell",
              show_default=True, help="shell: export lines; dotenv: KEY=VALUE (e.g. for $GITHUB_ENV).")
@click.option("--namespace", help="The environment of one namespace: its endpoint, zone and table prefix, "
                                  "and CHAOS_DYNAMO_NAMESPACE for the activities (docs/namespaces.md).")
def lab_env(state_file: str | None, fmt: str, namespace: str | None) -> None:
    """Print the environment that points AWS SDKs and the DNS shim at the lab."""
    path = state_path(state_file)
    try:
        info = read_state(path)
        if namespace is not None:
            info = info.scoped(namespace)
    except ConfigError as exc:
        _fail(str(ConfigError("--namespace", exc.problem, exc.fix)), EXIT_USAGE)
    except LabError as exc:
        _fail(str(exc))
    env = info.env() | {"CHAOS_DYNAMO_STATE": str(path)}
    if fmt == "json":
        click.echo(json.dumps(env, indent=2, sort_keys=True))
    else:
        prefix = "export " if fmt == "shell" else ""
        for key, value in sorted(env.items()):
            click.echo(f"{prefix}{key}={shlex.quote(value) if fmt == 'shell' else value}")


# --- service ---------------------------------------------------------------------------------

@main.group()
def service() -> None:
    """Start, list and stop the services under test (reference services or your own program)."""


@service.command("start")
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--kind", type=click.Choice(["naive", "legacy", "standard", "adaptive", "hardened",
                                           "lease-naive", "lease-hardened",
                                           "failover-naive", "failover-hardened"]),
              help="A reference service (instead of a command after --); lease-* are lease "
                   "fleets whose instances split the leases into shards; failover-* are "
                   "failover controllers (one instance).")
@click.option("--instances", type=int, default=1, show_default=True, help="Processes to run (1-64).")
@click.option("--rate", type=float, default=5.0, show_default=True,
              help="Reference services: logical DynamoDB calls per second per instance.")
@click.option("--concurrency", type=int, default=8, show_default=True,
              help="Reference services: workers per instance.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Reference services: seed of instance 0 (instance i uses seed+i).")
@click.option("--args", "extra_args", default="", metavar="TEXT",
              help="Reference services: extra arguments for each instance, split like a shell "
                   "would, e.g. --args \"--leases 100 --expiry 10\" (python -m "
                   "chaos_dynamo.lease.reference --help lists a lease fleet's).")
@click.option("--health-url", default="",
              help="A command's health URL (http://127.0.0.1:PORT/...); ready once it answers 200. "
                   "{instance} is replaced by the instance's index, here and in the command.")
@click.option("--ready-timeout", type=float, callback=_seconds(0.1, 3600), default=30.0, show_default=True,
              help="Seconds for every instance to become ready.")
@click.option("--state-file", type=click.Path(dir_okay=False), help="The lab's state file.")
def service_start(name: str, command: tuple[str, ...], kind: str | None, instances: int, rate: float,
                  concurrency: int, seed: int, extra_args: str, health_url: str, ready_timeout: float,
                  state_file: str | None) -> None:
    """Start service NAME on the running lab: a reference service, or your program after --.

    \b
      chaos-dynamo service start demo --kind hardened --instances 2
      chaos-dynamo service start dwfm --kind lease-naive --instances 2 --args "--leases 100 --expiry 10"
      chaos-dynamo service start checkout --health-url http://127.0.0.1:8080/health -- ./checkout --port 8080

    Each instance gets the lab's environment, AWS_SDK_UA_APP_ID=NAME and its own DNS source
    address, so the lab's logs tell its traffic apart; logs go next to the state file.
    """
    from chaos_dynamo.services import supervisor

    path = state_path(state_file)
    try:
        # Arguments first: a bad one is a usage error whether or not a lab is running.
        supervisor.validate(name, kind=kind or "", command=list(command) or None, instances=instances,
                            rate=rate, concurrency=concurrency, seed=seed, health_url=health_url,
                            args=extra_args)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    info = _running_lab(path)
    if info is None:
        _fail(f"no lab is running (state file {path}); start one with `chaos-dynamo lab up --detach`")
    click.echo(f"starting service {name} ({kind or 'command'}, {instances} instance(s))...")
    try:
        record = supervisor.start(name, kind=kind or "", command=list(command) or None,
                                  instances=instances, rate=rate, concurrency=concurrency, seed=seed,
                                  health_url=health_url, args=extra_args, state=path, lab=info,
                                  ready_timeout=ready_timeout, progress=click.echo)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    except ChaosDynamoError as exc:
        _fail(str(exc))
    click.echo(f"service {record.name} running: {len(record.instances)} instance(s), source address "
               f"{record.source_address or 'none'}, SDK app id {record.name}")
    for i in record.instances:
        parts = [f"[{i.index}] pid {i.pid}", i.health_url, i.metrics_url, f"log {i.log_path}"]
        click.echo("  " + "  ".join(p for p in parts if p))
    click.echo(f"stop it with: chaos-dynamo service stop {record.name}"
               + (f" --state-file {path}" if state_file else ""))


@service.command("stop")
@click.argument("name", required=False)
@click.option("--all", "stop_every", is_flag=True, help="Stop every recorded service.")
@click.option("--timeout", type=float, callback=_seconds(0.1, 3600), default=5.0, show_default=True,
              help="Seconds to wait after SIGTERM before SIGKILL.")
@click.option("--state-file", type=click.Path(dir_okay=False), help="The lab's state file.")
def service_stop(name: str | None, stop_every: bool, timeout: float, state_file: str | None) -> None:
    """Stop service NAME (or --all): SIGTERM its process groups, then SIGKILL. Not running is fine."""
    from chaos_dynamo.services import supervisor

    if bool(name) == stop_every:
        _fail("give a service NAME or --all (not both)", EXIT_USAGE)
    path = state_path(state_file)
    try:
        results = supervisor.stop_all(path, timeout) if stop_every else [supervisor.stop(str(name), path, timeout)]
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    except ChaosDynamoError as exc:
        _fail(str(exc))
    for result in results:
        if result["was_running"] or stop_every:
            click.echo(_stopped_line(result))
        else:
            click.echo(f"service {result['service']} is not running")
    if stop_every and not results:
        click.echo("no services are recorded")


@service.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--state-file", type=click.Path(dir_okay=False), help="The lab's state file.")
def service_list(as_json: bool, state_file: str | None) -> None:
    """The recorded services: kind, live instances, DNS source address and health."""
    from chaos_dynamo.services import supervisor
    from chaos_dynamo.services.registry import list_records

    path = state_path(state_file)
    services = [supervisor.status(r, check_health=True) for r in list_records(path)]
    if as_json:
        click.echo(json.dumps(services, indent=2, sort_keys=True))
        return
    if not services:
        click.echo(f"no services are recorded (state file {path})")
        return
    for s in services:
        click.echo(f"{s['name']}: {s['kind']}, {s['alive']}/{len(s['instances'])} instance(s) alive, "
                   f"source address {s['source_address'] or 'none'}")
        for i in s["instances"]:
            state = "alive" if i["alive"] else "EXITED"
            health = f"  {i['health']} ({i['health_url']})" if i["health"] else ""
            click.echo(f"  [{i['index']}] pid {i['pid']} {state}{health}  log {i['log_path']}")


# --- run -------------------------------------------------------------------------------------

@main.command("run")
@click.argument("experiment", type=click.Path(exists=True, dir_okay=False))
@click.option("--journal", "journal_path", type=click.Path(dir_okay=False),
              help="Where to write the journal (default journals/<experiment>.json).")
@click.option("--state-file", type=click.Path(dir_okay=False),
              help="Use the lab recorded here instead of starting one.")
@click.option("--seed", type=int, default=None, help="Seed for a lab started by this command.")
@click.option("--dry-run", is_flag=True,
              help="Print every Route 53 change batch, DynamoDB write and lab fault the run would send, "
                   "and send none (docs/safety.md).")
def run(experiment: str, journal_path: str | None, state_file: str | None, seed: int | None,
        dry_run: bool) -> None:
    """Run EXPERIMENT with the real `chaos` CLI on a lab and print a verdict.

    Starts a lab for the run unless one is already running. Exits 0 when the experiment did
    what it declares (e.g. the outage was reproduced and the rollback restored service).
    """
    from chaos_dynamo.runner import run_experiment

    try:
        code = run_experiment(Path(experiment), journal=Path(journal_path) if journal_path else None,
                              state_file=state_file, seed=seed, dry_run=dry_run)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    except ChaosDynamoError as exc:
        _fail(str(exc))
    sys.exit(code)


# --- explore ---------------------------------------------------------------------------------

EXIT_INCONCLUSIVE = 3
"""`explore` found nothing but stopped at --max-states: not a proof, so not a pass."""


@main.command("explore")
@click.option("--design", type=click.Choice(["naive", "fenced"]), default="naive", show_default=True,
              help="naive: the one-time check of us-east-1; fenced: the generation fence.")
@click.option("--enactors", type=click.IntRange(1, 26), default=3, show_default=True,
              help="DNS Enactors (one per AZ in us-east-1: 3).")
@click.option("--plans", type=click.IntRange(2, 10_000), default=4, show_default=True,
              help="Plans in all: plan 1 is applied at the start, the Planner writes the rest.")
@click.option("--endpoints", type=click.IntRange(1, 3), default=1, show_default=True,
              help="Endpoints of the lab the Enactors manage (the lab has 3).")
@click.option("--keep", type=click.IntRange(0, 10_000), default=1, show_default=True,
              help="Cleanup deletes plans more than KEEP generations older than the one applied "
                   "(the outage needs plans >= keep + 3).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Picks among equally short counterexamples; lengths and verdicts do not depend on it.")
@click.option("--max-states", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Stop after this many distinct states (the result is then not exhaustive).")
@click.option("--target", type=click.Choice(["empty-endpoint", "generation-decreased", "enactor-stuck", "any"]),
              default="empty-endpoint", show_default=True,
              help="What ends the search (any: the first violation; enactor-stuck: an Enactor gives "
                   "up, the us-east-1 story to its end). Every invariant is checked regardless.")
@click.option("--trace-out", type=click.Path(dir_okay=False),
              help="Where to write the counterexample (default traces/explore-DESIGN-NxPxE.json).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
def explore_command(design: str, enactors: int, plans: int, endpoints: int, keep: int, seed: int,
                    max_states: int, target: str, trace_out: str | None, as_json: bool) -> None:
    """Enumerate every interleaving of the Planner and Enactors in memory, breadth-first.

    Exits 1 with the shortest counterexample (written as a trace for `chaos-dynamo replay`),
    0 when no interleaving within the bounds breaks an invariant, 3 when --max-states stopped
    the search first.
    """
    from chaos_dynamo.control.enactor import Design
    from chaos_dynamo.control.explorer import Bounds, Progress, explore, render_result

    def report(p: Progress) -> None:
        click.echo(f"  .. {p.states:,} states, {p.transitions:,} transitions, depth {p.depth}, "
                   f"{p.seconds:.1f} s", err=True)

    try:
        bounds = Bounds(Design(design), enactors, plans, endpoints, keep)
        result = explore(bounds, seed=seed, target=target, max_states=max_states, progress=report)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    path = None
    if result.violation is not None:
        default = Path("traces") / f"explore-{design}-{bounds.label}.json"
        try:
            path = result.to_trace().save(Path(trace_out) if trace_out else default)
        except OSError as exc:
            _fail(f"--trace-out: cannot write the trace ({exc}); give a writable path", EXIT_USAGE)
    if as_json:
        click.echo(json.dumps(result.as_dict() | {"trace": str(path) if path else None}, indent=2))
    else:
        click.echo(render_result(result))
        if path is not None:
            click.echo(f"trace written to {path}  (replay it on a lab: chaos-dynamo replay {path})")
    if result.violation is not None:
        sys.exit(EXIT_FAILED)
    sys.exit(EXIT_OK if result.exhaustive else EXIT_INCONCLUSIVE)



# --- replay ----------------------------------------------------------------------------------

@main.command("replay")
@click.argument("trace", type=click.Path(dir_okay=False))
@click.option("--state-file", type=click.Path(dir_okay=False),
              help="Use the lab recorded here instead of starting one.")
@click.option("--no-restore", is_flag=True, help="Leave the lab as the replay left it (e.g. empty).")
def replay(trace: str, state_file: str | None, no_restore: bool) -> None:
    """Replay TRACE (from `chaos-dynamo explore`) on a lab, step by step, through its threads.

    Prints the lab-side history and whether the trace's violation happened on the lab too;
    exits 0 when it did. Starts a lab for the replay unless one is already running.
    """
    from chaos_dynamo.control.replay import replay_trace

    try:
        code = replay_trace(Path(trace), state_file=state_file, restore=not no_restore)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    except ChaosDynamoError as exc:
        _fail(str(exc))
    sys.exit(code)


# --- verify ----------------------------------------------------------------------------------

@main.command("verify")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--journals", "journals", type=click.Path(file_okay=False, path_type=Path),
              default=Path("journals"), show_default=True,
              help="Where each experiment's journal (<stem>.json), chaos output (.log) and lab timeline "
                   "(.lab.json) go.")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write JUnit XML here.")
@click.option("--summary", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a Markdown summary table here (also appended to $GITHUB_STEP_SUMMARY when set).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), help="Write the HTML report here.")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Experiments run at once: any number on labs of their own; on a running lab only "
                   "experiments with disjoint \"namespaces\" run together.")
@click.option("--state-file", type=click.Path(dir_okay=False),
              help="Run on the lab recorded here (default: a running lab in the default state file, "
                   "else a lab of its own per experiment).")
@click.option("--seed", type=int, default=None, help="Seed for the labs started by this command.")
def verify(paths: tuple[Path, ...], journals: Path, junit: Path | None, summary: Path | None,
           report: Path | None, jobs: int, state_file: str | None, seed: int | None) -> None:
    """Run experiments (files, or directories of *.json) with the real `chaos` CLI and judge
    each: a CI gate. Every experiment is checked before anything runs.

    Unlike `chaos run`, an experiment fails when its steady state did not hold before the
    method, when a method action raised, when the hypothesis deviated (or, for
    "expect": "deviate", did not deviate on the named probes), and when the rollbacks did
    not restore service. Without PATHS: experiments/.

    \b
    Exit codes:
      0    every experiment met its expectation
      1    at least one did not
      2    bad input or usage; nothing ran
      3    infrastructure error (lab did not start, chaos missing or crashed,
           a report not written) and no experiment failed
      130  interrupted (Ctrl-C, SIGTERM or SIGHUP): running experiments rolled back,
           reports cover what ran
    """
    from chaos_dynamo.verify.command import EXIT_INFRA, Outputs, run_verify

    try:
        code = run_verify(paths, journals=journals, outputs=Outputs(junit, summary, report), jobs=jobs,
                          state_file=state_file, seed=seed)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    except LabError as exc:
        _fail(str(exc), EXIT_INFRA)
    sys.exit(code)



# --- report ----------------------------------------------------------------------------------

@main.command("report")
@click.argument("journals", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The HTML file to write (replaced atomically).")
@click.option("--title", default=None, help="The page's title (default: chaos-dynamo resilience report).")
def report(journals: tuple[Path, ...], out: Path, title: str | None) -> None:
    """Write one static HTML report of JOURNAL(s): a verdict table, then per experiment its
    timelines with the fault windows shaded (docs/report.md).

    Reads each journal's lab timeline (<journal>.lab.json) and chaos log (<journal>.log) when
    present. The page loads nothing from the network. Exits 2, writing nothing, when a
    JOURNAL is not a chaos journal.
    """
    from chaos_dynamo.report.html import write_report

    # `journals/*.json` also matches the lab timelines verify writes beside each journal.
    sidecars = [path for path in journals if path.name.endswith(".lab.json")]
    for path in sidecars:
        click.echo(f"skipped {path}: a lab timeline, read with its journal", err=True)
    journals = tuple(path for path in journals if path not in sidecars)
    if not journals:
        _fail("no journal given, only lab timelines (*.lab.json); give the journals (*.json)", EXIT_USAGE)
    try:
        written = write_report(list(journals), out, title=title)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        _fail(f"{out}: cannot write the report ({exc}); give a writable path", EXIT_USAGE)
    click.echo(f"report: {written} ({len(journals)} journal(s))")


# --- audit -----------------------------------------------------------------------------------

class _AuditCommand(click.Command):
    """``audit`` takes unknown options as the start of COMMAND; this remembers the raw
    arguments so a mistyped option (``--fail-onn high -- cmd``) can be told from a command
    that starts with ``-`` after ``--``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["audit.args"] = list(args)
        return super().parse_args(ctx, args)


def _audit_option_typo(command: tuple[str, ...]) -> str | None:
    """The unknown option COMMAND starts with, unless ``--`` came right before it."""
    if not command or not command[0].startswith("-"):
        return None
    raw = click.get_current_context().meta.get("audit.args", [])
    before = len(raw) - len(command) - 1
    return None if before >= 0 and raw[before] == "--" else command[0]


@main.command("audit", cls=_AuditCommand,
              context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--timeout", type=float, metavar="S",
              help="Stop the command after S seconds (SIGTERM, then SIGKILL): a service is audited "
                   "for S seconds. Not an error.")
@click.option("--outage", type=float, metavar="SECONDS",
              help="Empty the primary DynamoDB endpoint's DNS answer for SECONDS during the run "
                   "(always restored), to see how the command retries through the us-east-1 failure.")
@click.option("--outage-after", type=float, default=3.0, show_default=True, metavar="S",
              help="When the outage starts, seconds after the command.")
@click.option("--static", "static_paths", multiple=True, type=click.Path(path_type=Path), metavar="PATH",
              help="Also scan PATH (file or directory, repeatable) for boto3/botocore client construction.")
@click.option("--json", "json_out", metavar="FILE", help="Write the JSON report (version 1) here ('-': stdout).")
@click.option("--markdown", "markdown_out", metavar="FILE", help="Write the Markdown report here ('-': stdout).")
@click.option("--mermaid", "mermaid_out", metavar="FILE", help="Write the Mermaid dependency graph here ('-': stdout).")
@click.option("--fail-on", type=click.Choice(["high", "medium"]),
              help="Exit 1 when a finding is this severe or more (only new ones with --baseline).")
@click.option("--baseline", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Known finding ids (JSON list, or an earlier --json report): they do not fail the gate.")
@click.option("--write-baseline", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Write this audit's finding ids as a baseline.")
@click.option("--from", "from_report", type=click.Path(dir_okay=False, path_type=Path), metavar="REPORT",
              help="Re-judge and re-render a saved --json report; runs nothing.")
@click.option("--name", help="The command's name in the reports and its SDK app id (default: from COMMAND).")
@click.option("--state-file", type=click.Path(dir_okay=False), help="Use the lab recorded here.")
@click.option("--seed", type=int, default=None, help="Seed for a lab started by this command.")
def audit(command: tuple[str, ...], timeout: float | None, outage: float | None, outage_after: float,
          static_paths: tuple[Path, ...], json_out: str | None, markdown_out: str | None,
          mermaid_out: str | None, fail_on: str | None, baseline: Path | None, write_baseline: Path | None,
          from_report: Path | None, name: str | None, state_file: str | None, seed: int | None) -> None:
    """Run COMMAND on the lab and report every AWS dependency it used and its risks.

    \b
      chaos-dynamo audit --timeout 20 --outage 5 -- python -m myservice
      chaos-dynamo audit --static src --fail-on high --baseline audit-baseline.json -- pytest tests/smoke
      chaos-dynamo audit --static src                      (static scan only)

    Reports (Markdown on stdout unless --json/--markdown/--mermaid say otherwise): one row per
    service, region and endpoint, with operations, attempts, client settings and call sites;
    findings (us-east-1 pinning, unbounded or legacy retries, missing timeouts, control-plane
    calls on the data path) with fixes. Uses the running lab, else starts one.

    \b
    Exit codes: 0 ok; 1 findings at or above --fail-on (new ones only with --baseline);
    2 bad input; 3 lab error (no lab, or the outage could not be undone), a report that
    could not be written after the run, or a crash; 130 interrupted. The command's own
    exit code is reported, not returned. See docs/audit.md.
    """
    from chaos_dynamo.audit.command import Options
    from chaos_dynamo.audit.command import main as audit_main

    typo = _audit_option_typo(command)
    if typo is not None:
        _fail(f"unknown option {typo} (options go before the command; use -- before a command that starts "
              "with -)", EXIT_USAGE)
    outputs = tuple((fmt, target) for fmt, target in
                    (("json", json_out), ("markdown", markdown_out), ("mermaid", mermaid_out)) if target)
    options = Options(command=command, timeout=timeout, outage=outage, outage_after=outage_after,
                      static=static_paths, outputs=outputs, fail_on=fail_on, baseline=baseline,
                      write_baseline=write_baseline, from_report=from_report, name=name,
                      state_file=state_file, seed=seed)
    sys.exit(audit_main(options, echo=lambda line: click.echo(line, err=True),
                        out=lambda text: click.echo(text, nl=False)))


if __name__ == "__main__":
    main()
