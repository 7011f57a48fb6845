"""Run one experiment on a lab with the real ``chaos`` CLI, and judge the journal.

``chaos run`` exits 0 when the steady state fails before the method, or when a method action
raises; so this runner reads the journal itself and checks the experiment did what it
declares. An experiment declares its purpose in its ``extensions``::

    "extensions": [{"name": "chaos-dynamo", "expect": "deviate"}]

``deviate``: the fault must break the hypothesis (a reproduction) and the rollbacks must put
service back. ``hold`` (the default): the hypothesis must hold throughout.

Whatever happens, including Ctrl-C, the runner finishes by checking the endpoint and, if it
is still broken, restoring it itself, and says so. After an interrupted run it also stops the
services (``chaos-dynamo service``) the run started and left running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from chaos_dynamo.clock import REAL_CLOCK
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.lab.state import LabInfo, read_state, remove_state, state_path, write_state

EXPECTATIONS = ("deviate", "hold")


@dataclass
class Verdict:
    ok: bool
    headline: str
    lines: list[str] = field(default_factory=list)


def load_experiment(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(str(path), f"is not valid JSON ({exc})", "fix the syntax") from None
    if not isinstance(data, dict) or "method" not in data:
        raise ConfigError(str(path), "is not a Chaos Toolkit experiment (no \"method\")",
                          "see experiments/ for examples")
    return data


def expectation(experiment: dict[str, Any]) -> str:
    """The experiment's declared purpose: ``deviate`` or ``hold``."""
    for ext in experiment.get("extensions", []) or []:
        if isinstance(ext, dict) and ext.get("name") == "chaos-dynamo" and "expect" in ext:
            value = ext["expect"]
            if value not in EXPECTATIONS:
                raise ConfigError("extensions[chaos-dynamo].expect", f"{value!r} is not known",
                                  f"use one of {list(EXPECTATIONS)}")
            return str(value)
    return "hold"


def must_deviate_on(experiment: dict[str, Any]) -> list[str]:
    """Names of the probes a reproduction must deviate on (``"deviates"`` in the extension).

    Without it, any deviating probe counts; with it, a deviation for another reason (say a
    slow round trip) is not mistaken for the outage the experiment is about.
    """
    for ext in experiment.get("extensions", []) or []:
        if isinstance(ext, dict) and ext.get("name") == "chaos-dynamo" and "deviates" in ext:
            value = ext["deviates"]
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                raise ConfigError("extensions[chaos-dynamo].deviates", f"{value!r} is not a list of probe names",
                                  "list the steady-state probes that must fail, e.g. [\"endpoint-resolves\"]")
            return list(value)
    return []


@contextmanager
def lab_for_run(state_file: str | None, seed: int | None) -> Iterator[tuple[LabInfo, bool]]:
    """The running lab (from the state file), or a lab started in-process for this run."""
    path = state_path(state_file)
    running: LabInfo | None = None
    try:
        from chaos_dynamo.endpoint._lab import fetch_info

        running = fetch_info(read_state(path).api_url)
    except LabError:
        if state_file:
            raise
    if running is not None:
        yield running, False
        return
    from chaos_dynamo.config import load_topology
    from chaos_dynamo.lab.lab import Lab

    click.echo("starting a lab for this run...")
    started = REAL_CLOCK.monotonic()
    lab = Lab(load_topology(None, seed=seed))
    info = lab.start()
    click.echo(f"lab ready in {REAL_CLOCK.monotonic() - started:.2f} s "
               f"(API {info.api_url}, DNS {info.dns_host}:{info.dns_port})")
    write_state(info, path)
    try:
        yield info, True
    finally:
        lab.stop()
        remove_state(path, pid=info.pid)


def chaos_command() -> list[str]:
    """The `chaos` CLI of this environment."""
    script = Path(sys.executable).with_name("chaos")
    return [str(script)] if script.exists() else [sys.executable, "-m", "chaostoolkit"]


def run_experiment(experiment_path: Path, journal: Path | None = None, state_file: str | None = None,
                   seed: int | None = None) -> int:
    experiment = load_experiment(experiment_path)
    expect = expectation(experiment)
    must_deviate_on(experiment)  # checked before any lab starts
    journal = journal or Path("journals") / f"{experiment_path.stem}.json"
    journal.parent.mkdir(parents=True, exist_ok=True)
    if journal.exists():
        journal.unlink()
    with lab_for_run(state_file, seed) as (info, _started):
        env = os.environ | info.env() | {"CHAOS_DYNAMO_STATE": str(state_path(state_file))}
        run_started = REAL_CLOCK.now()
        services_before = _services_marks(state_file)
        command = chaos_command() + ["--no-version-check", "--log-file", str(journal.with_suffix(".log")),
                                     "run", "--journal-path", str(journal), str(experiment_path)]
        click.echo(f"$ {' '.join(command[-4:])}")
        chaos_exit, interrupted = _run_chaos(command, env)
        if interrupted:
            _stop_services_started(state_file, services_before)
        safety = _ensure_restored(info)
        verdict = judge(journal, expect, chaos_exit, safety, interrupted)
        timeline = _timeline(info, run_started)
    click.echo("")
    for line in verdict.lines:
        click.echo(f"  {line}")
    if timeline:
        click.echo(f"  timeline of {info.primary_endpoint.name}: lab DNS answers (A) and, when the "
                   "control plane ran, its active generation in Route 53:")
        for line in timeline:
            click.echo(f"    {line}")
    click.secho(f"verdict: {verdict.headline}", fg="green" if verdict.ok else "red", bold=True)
    click.echo(f"journal: {journal}")
    return 0 if verdict.ok else 1


def _run_chaos(command: list[str], env: dict[str, str]) -> tuple[int, bool]:
    """Run `chaos`; on Ctrl-C or SIGTERM let it finish its rollbacks before returning.

    `chaos` runs in its own session, so a terminal's Ctrl-C reaches only this process, which
    passes exactly one SIGINT on (a second one could cut the rollbacks short).
    """
    process = subprocess.Popen(command, env=env, start_new_session=True)

    def forward_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, forward_term)
    try:
        return process.wait(), False
    except KeyboardInterrupt:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout=120), True
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            process.kill()
            process.wait()
            return 130, True
    finally:
        signal.signal(signal.SIGTERM, previous)


def _services_marks(state_file: str | None) -> frozenset[tuple[str, float]]:
    from chaos_dynamo.services import supervisor

    return supervisor.marks(state_path(state_file))


def _stop_services_started(state_file: str | None, before: frozenset[tuple[str, float]]) -> None:
    """After an interrupted run: stop the services it started that its control did not stop."""
    from chaos_dynamo.services import supervisor

    try:
        for result in supervisor.stop_started_since(before, state_path(state_file)):
            click.echo(f"safety net: stopped service {result['service']} started during the run "
                       f"(pids {result['pids']})")
    except Exception as exc:  # noqa: BLE001 - reported, the lab restore still runs
        click.echo(f"safety net: could not stop the run's services: {type(exc).__name__}: {exc}", err=True)


@dataclass
class Safety:
    """The endpoints as the runner found them after the run."""

    healthy_endpoints: int
    roundtrip: bool
    restored_by_runner: bool
    error: str = ""
    restored: list[str] = field(default_factory=list)


def _ensure_restored(info: LabInfo) -> Safety:
    """Check every endpoint after the run; restore what the experiment's rollbacks did not.

    Load-balancer faults are cleared too, and a control plane left stuck (an Enactor gave up
    on a plan Route 53 kept refusing) is restored and unstuck: a lab is left as the run
    found it.
    """
    from chaos_dynamo.endpoint import actions, probes
    from chaos_dynamo.lbfleet.actions import reset_lb_faults

    config = {"chaos_dynamo_api": info.api_url}

    def healthy(name: str, qtype: str) -> bool:
        # Three tries: one slow round trip on a loaded machine is not a broken endpoint.
        return any(probes.endpoint_addresses(name, qtype, configuration=config) > 0
                   and probes.dynamodb_roundtrip(name, configuration=config) for _ in range(3))

    def broken() -> list[str]:
        return [ep.name for ep in info.endpoints if not healthy(ep.name, "AAAA" if ep.ipv6 else "A")]

    try:
        reset_lb_faults(configuration=config)
        # A scenario still running in the lab (chaos was interrupted mid-request; the lab goes
        # on) or a stuck control plane needs the operator first: that restore aborts the
        # scenario, puts the newest plan back on every endpoint and clears the stuck state.
        operator = _control_plane_needs_operator(config)
        if operator:
            from chaos_dynamo.control.actions import restore_and_unstick

            restore_and_unstick(configuration=config)
        bad = broken()
        if bad:
            actions.restore_endpoint(configuration=config)
        if bad or operator:
            still = broken()
            return Safety(len(info.endpoints) - len(still), not still, True,
                          f"still broken: {still}" if still else "",
                          restored=([operator] if operator else []) + bad)
        return Safety(len(info.endpoints), True, False)
    except Exception as exc:  # noqa: BLE001 - reported in the verdict, never swallowed silently
        return Safety(0, False, False, f"{type(exc).__name__}: {exc}")


def _control_plane_needs_operator(config: dict[str, Any]) -> str:
    """What the lab's control plane was left doing that needs the operator ("" when nothing)."""
    from chaos_dynamo.control import _client

    try:
        status = _client.call("status", configuration=config)
    except LabError:
        return ""  # a lab without a control plane (an older one): nothing to restore
    if status.get("mode") in ("race", "replay") or status.get("busy_with"):
        return f"the control plane's {status.get('busy_with') or status.get('mode')} (still running)"
    if status.get("stuck"):
        return "the stuck control plane"
    return ""


def _probe_lines(probes: list[dict[str, Any]]) -> list[str]:
    out = []
    for run in probes:
        activity = run.get("activity", {})
        name = activity.get("name", "?")
        met = run.get("tolerance_met")
        tolerance = json.dumps(activity.get("tolerance"))
        status = "ok" if met else ("FAILED" if met is False else run.get("status", "?"))
        output = run.get("output") if "output" in run else run.get("exception", [""])[-1:]
        out.append(f"{name}: {json.dumps(output, default=str)} (tolerance {tolerance}) {status}")
    return out


def judge(journal_path: Path, expect: str, chaos_exit: int, safety: Safety, interrupted: bool) -> Verdict:
    """Read the journal and decide whether the experiment did what it declares."""
    lines: list[str] = []
    if interrupted:
        lines.append("the run was interrupted (Ctrl-C)")
    try:
        journal = json.loads(journal_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        return Verdict(False, f"FAILED: no journal from chaos ({exc}); chaos exited {chaos_exit}",
                       lines + _safety_lines(safety))
    steady = journal.get("steady_states") or {}
    before = steady.get("before") or {}
    after = steady.get("after") or {}
    method = [r for r in journal.get("run", []) if r.get("activity", {}).get("type") == "action"]
    rollbacks = journal.get("rollbacks", [])
    lines.append(f"experiment: {journal.get('experiment', {}).get('title', '?')}  "
                 f"(chaos status {journal.get('status')!r}, exit {chaos_exit}; expected to {expect})")
    before_met = before.get("steady_state_met")
    lines.append(f"steady state before: {'met' if before_met else 'NOT met'}")
    lines += [f"  {x}" for x in _probe_lines(before.get("probes", []))]
    actions_ok = all(r.get("status") == "succeeded" for r in method)
    for r in method:
        lines.append(f"method: {r['activity'].get('name')} {r.get('status')}"
                     + (f": {_clip(json.dumps(r.get('output'), default=str))}" if r.get("status") == "succeeded"
                        else f": {''.join(r.get('exception', []))[-300:].strip()}"))
    after_met = after.get("steady_state_met")
    if after:
        lines.append(f"steady state after: {'met' if after_met else 'NOT met (deviated)'}")
        lines += [f"  {x}" for x in _probe_lines(after.get("probes", []))]
    rollbacks_ok = all(r.get("status") == "succeeded" for r in rollbacks)
    for r in rollbacks:
        lines.append(f"rollback: {r['activity'].get('name')} {r.get('status')}")
    lines += _safety_lines(safety)
    restored = safety.roundtrip and not safety.restored_by_runner and not safety.error
    status = journal.get("status")

    if interrupted or status == "interrupted":
        return Verdict(False, "INTERRUPTED: the run did not finish"
                       + ("; the endpoint is restored" if safety.roundtrip else ""), lines)
    if not before_met:
        return Verdict(False, "FAILED: the steady state did not hold before the method, so nothing "
                       "was tested (is the lab healthy?)", lines)
    if not actions_ok:
        return Verdict(False, "FAILED: a method action raised; see the journal", lines)
    if status in ("failed", "aborted"):
        return Verdict(False, f"FAILED: chaos ended the run with status {status!r}; see the journal", lines)
    if not after:
        return Verdict(False, "FAILED: the steady state was not checked after the method", lines)
    if expect == "deviate":
        if not method:
            return Verdict(False, "FAILED: the experiment declares a reproduction but its method "
                           "has no action", lines)
        if after_met is not False:
            return Verdict(False, "NOT REPRODUCED: the hypothesis still held after the fault", lines)
        failed = [p.get("activity", {}).get("name") for p in after.get("probes", [])
                  if p.get("tolerance_met") is False]
        wanted = must_deviate_on(journal.get("experiment", {}))
        if wanted and not set(failed) & set(wanted):
            return Verdict(False, f"NOT REPRODUCED: the hypothesis deviated on {failed}, not on "
                           f"{wanted} as the experiment intends", lines)
        if not (rollbacks_ok and restored):
            return Verdict(False, "FAILED: the outage was reproduced, but the rollback did not "
                           "restore service", lines)
        return Verdict(True, f"REPRODUCED: the hypothesis deviated on {', '.join(map(str, failed))} as "
                       "the fault intended, and the rollback restored service", lines)
    if after_met is not True or journal.get("deviated"):
        return Verdict(False, "DEVIATED: the hypothesis did not hold", lines)
    if not (rollbacks_ok and restored):
        return Verdict(False, "FAILED: service was not restored after the run", lines)
    return Verdict(True, "HELD: the hypothesis held and service is healthy", lines)


def _clip(text: str, limit: int = 400) -> str:
    """An activity's output for one line of the verdict: the journal has all of it."""
    return text if len(text) <= limit else text[:limit - 4] + " ..."


def _safety_lines(safety: Safety) -> list[str]:
    if safety.error:
        return [f"endpoint check after the run failed: {safety.error}"]
    if safety.restored_by_runner:
        return [f"after the run {safety.restored} did not resolve or answer; chaos-dynamo's safety net "
                f"restored them (the experiment's rollback did not): "
                f"{'ok' if safety.roundtrip else 'FAILED'}"]
    return [f"after the run: {safety.healthy_endpoints} endpoint(s) resolve and answer DynamoDB"]


def _timeline(info: LabInfo, since: float) -> list[str]:
    """What happened to the primary endpoint during the run, in time order: changes in the
    lab DNS's answer, and (when the control plane ran) changes of the active generation in
    Route 53, cleanups that deleted plans and batches Route 53 refused."""
    from chaos_dynamo.endpoint._lab import http_json

    name = info.primary_endpoint.name.rstrip(".") + "."
    try:
        log = http_json(f"{info.api_url}/_chaos_dynamo/dns/log?since={since}")
    except LabError:
        return []
    events: list[tuple[float, str]] = []
    last: tuple[str, int] | None = None
    count = 0
    start_t = 0.0
    for entry in log:
        if entry.get("name", "").lower().rstrip(".") + "." != name or entry.get("qtype") != "A":
            continue
        state = (entry["rcode"], int(entry["answers"]))
        if state != last:
            if last is not None:
                events.append((start_t, _dns_line(last, count)))
            last, count, start_t = state, 0, float(entry["time"])
        count += 1
    if last is not None:
        events.append((start_t, _dns_line(last, count)))
    events += _control_events(info, since, name)
    return [f"+{t - since:6.2f} s  {text}" for t, text in sorted(events, key=lambda e: e[0])]


def _dns_line(state: tuple[str, int], count: int) -> str:
    rcode, answers = state
    what = f"{answers} address(es)" if answers else "NO ADDRESSES (empty answer)"
    return f"DNS       {rcode:8s} {what}  [{count} quer{'y' if count == 1 else 'ies'}]"


def _control_events(info: LabInfo, since: float, name: str) -> list[tuple[float, str]]:
    """The control plane's steps that changed (or failed to change) the primary endpoint."""
    from chaos_dynamo.endpoint._lab import http_json

    base = f"{info.api_url}/_chaos_dynamo/control"
    try:
        changes = http_json(f"{base}/generations?since={since}")
        history = http_json(f"{base}/history?since={since}")
    except LabError:
        return []  # a lab without a control plane
    events: list[tuple[float, str]] = []
    for c in changes:
        if str(c.get("endpoint", "")).rstrip(".") + "." != name:
            continue
        flag = "  WENT BACKWARDS" if c.get("backwards") else ""
        events.append((float(c["time"]), f"Route 53  active generation {c['from']} -> {c['to']} "
                                         f"({c['actor']}){flag}"))
    refused: dict[str, Any] | None = None
    times = 0
    for h in history + [{}]:
        same = (refused is not None and h.get("actor") == refused["actor"] and h.get("action") == "commit"
                and h.get("outcome") == "fail" and h.get("error") == refused.get("error"))
        if same:
            times += 1
            continue
        if refused is not None:
            what = str(refused.get("error") or refused.get("detail", "")).replace(
                " in ChangeResourceRecordSets", "")
            events.append((float(refused["time"]), f"Route 53  refused {refused['actor']}'s plan "
                                                   f"{refused.get('generation')} ({times}x): {_clip(what, 200)}"))
            refused = None
        if h.get("action") == "commit" and h.get("outcome") == "fail" and h.get("error") \
                and str(h.get("endpoint", "")).rstrip(".") + "." == name:
            refused, times = h, 1
        detail = str(h.get("detail", ""))
        if h.get("action") == "cleanup" and h.get("outcome") == "ok" and detail.startswith("deleted ") \
                and not detail.startswith("deleted 0 "):
            events.append((float(h["time"]), f"cleanup   {h['actor']}, plan {h.get('generation')}: {detail}"))
    return events
