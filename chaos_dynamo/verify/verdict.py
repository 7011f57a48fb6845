"""The verdict on one experiment's journal: pure code over the journal and the safety check.

``chaos run`` exits 0 when the steady state fails *before* the method and when a method
action raises, so a CI gate cannot trust its exit code. :func:`judge_journal` reads the
journal and decides, in this order (the first rule that applies gives the headline):

==============================================  ==========  ==========================
what happened                                   status      failures (phase)
==============================================  ==========  ==========================
interrupted (Ctrl-C, SIGTERM)                   interrupted
no journal (chaos crashed, could not start)     error
steady state not met before the method          failed      the probe (before)
a method action raised                          failed      each such action (method)
chaos ended with status failed/aborted          failed      raising probes (after)
steady state not checked after the method       failed      (after)
expect=deviate: no action in the method         failed      (expectation)
expect=deviate: the hypothesis held             failed      the probes that held
expect=deviate: deviated on other probes        failed      (expectation)
rollback failed or the safety net restored      failed      (rollback) / (safety)
expect=hold: the hypothesis deviated            failed      the probes (after)
==============================================  ==========  ==========================

Each :class:`Failure` carries the activity's name, its tolerance and its value (a probe's
output, an action's exception), so a CI report can say ``endpoint-resolves = 0 outside
tolerance {"type": "range", "range": [1, 1000]} (after)`` without opening the journal.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_dynamo.verify.experiments import must_deviate_on

STATUSES = ("passed", "failed", "error", "interrupted")
_MODULE_PATH = re.compile(r"^(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*:)")


@dataclass(frozen=True)
class Failure:
    """One reason an experiment did not meet its expectation.

    Attributes:
        phase: ``before`` | ``method`` | ``after`` | ``rollback`` | ``safety`` | ``expectation``.
        activity: the probe or action's name ("" when not about one activity).
        tolerance: the probe's tolerance as in the experiment (None for actions).
        value: the probe's output, or the action's exception text.
        message: one line a person reads.
    """

    phase: str
    activity: str
    tolerance: Any
    value: Any
    message: str


@dataclass
class Safety:
    """The endpoints as the runner found them after the run."""

    healthy_endpoints: int
    roundtrip: bool
    restored_by_runner: bool
    error: str = ""
    restored: list[str] = field(default_factory=list)


@dataclass
class Verdict:
    """Whether the experiment did what it declares: a headline, the lines behind it, a
    status (one of :data:`STATUSES`) and the failures, first the one to read first."""

    ok: bool
    headline: str
    lines: list[str] = field(default_factory=list)
    status: str = ""
    failures: list[Failure] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.status:
            self.status = "passed" if self.ok else "failed"


def judge(journal_path: Path, expect: str, chaos_exit: int, safety: Safety, interrupted: bool) -> Verdict:
    """Read the journal at ``journal_path`` and decide (see :func:`judge_journal`)."""
    try:
        journal = json.loads(journal_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        return judge_journal(None, expect, chaos_exit, safety, interrupted, missing=str(exc))
    return judge_journal(journal, expect, chaos_exit, safety, interrupted)


def judge_journal(journal: dict[str, Any] | None, expect: str, chaos_exit: int, safety: Safety,
                  interrupted: bool, missing: str = "") -> Verdict:
    """Decide whether the run did what the experiment declares (rules in the module docstring).

    Args:
        journal: the journal chaos wrote, or None when there is none (``missing`` says why).
        expect: ``hold`` or ``deviate`` (the experiment's chaos-dynamo extension).
        chaos_exit: the exit code of ``chaos run`` (reported, never trusted alone).
        safety: the endpoints as found after the run.
        interrupted: the run was cut short by Ctrl-C or SIGTERM.
    """
    lines = ["the run was interrupted (Ctrl-C)"] if interrupted else []
    if journal is None:
        lines += _safety_lines(safety)
        if interrupted:
            return Verdict(False, "INTERRUPTED: the run did not finish (no journal)", lines, "interrupted")
        return Verdict(False, f"ERROR: no journal from chaos ({missing}); chaos exited {chaos_exit}",
                       lines, "error")
    run = _Run(journal, safety)
    lines += run.lines(expect, chaos_exit)
    if interrupted or run.status == "interrupted":
        return Verdict(False, "INTERRUPTED: the run did not finish"
                       + ("; the endpoint is restored" if safety.roundtrip else ""), lines, "interrupted")
    headline, failures = _decide(run, expect)
    return Verdict(not failures, headline, lines, failures=failures)


class _Run:
    """The parts of a journal the rules read."""

    def __init__(self, journal: dict[str, Any], safety: Safety) -> None:
        steady = journal.get("steady_states") or {}
        self.journal = journal
        self.safety = safety
        self.before: dict[str, Any] = steady.get("before") or {}
        self.after: dict[str, Any] = steady.get("after") or {}
        self.actions = [r for r in journal.get("run", []) if r.get("activity", {}).get("type") == "action"]
        self.rollbacks: list[dict[str, Any]] = journal.get("rollbacks", [])
        self.status = journal.get("status")

    def lines(self, expect: str, chaos_exit: int) -> list[str]:
        """What happened, one line per step, as the runner prints it."""
        out = [f"experiment: {self.journal.get('experiment', {}).get('title', '?')}  "
               f"(chaos status {self.status!r}, exit {chaos_exit}; expected to {expect})",
               f"steady state before: {'met' if self.before.get('steady_state_met') else 'NOT met'}"]
        out += [f"  {x}" for x in _probe_lines(self.before.get("probes", []))]
        for r in self.actions:
            out.append(f"method: {r['activity'].get('name')} {r.get('status')}"
                       + (f": {clip(json.dumps(r.get('output'), default=str))}" if r.get("status") == "succeeded"
                          else f": {clip(exception_text(r), 300)}"))
        if self.after:
            out.append(f"steady state after: {'met' if self.after.get('steady_state_met') else 'NOT met (deviated)'}")
            out += [f"  {x}" for x in _probe_lines(self.after.get("probes", []))]
        out += [f"rollback: {r['activity'].get('name')} {r.get('status')}" for r in self.rollbacks]
        return out + _safety_lines(self.safety)

    def restore_failures(self) -> list[Failure]:
        """Rollbacks that raised, and what the safety net found broken after the run."""
        failures = [_action_failure(r, "rollback") for r in self.rollbacks if r.get("status") != "succeeded"]
        s = self.safety
        if s.error:
            failures.append(Failure("safety", "", None, s.error, f"the endpoint check after the run failed: "
                                                                f"{s.error} (safety)"))
        elif s.restored_by_runner or not s.roundtrip:
            failures.append(Failure("safety", "", None, s.restored,
                                    f"after the run {s.restored} did not resolve or answer; chaos-dynamo's "
                                    f"safety net restored them: {'ok' if s.roundtrip else 'FAILED'} (safety)"))
        return failures


def _decide(run: _Run, expect: str) -> tuple[str, list[Failure]]:
    """The headline and the failures (none: the experiment did what it declares)."""
    if not run.before.get("steady_state_met"):
        return ("FAILED: the steady state did not hold before the method, so nothing was tested "
                "(is the lab healthy?)", _probe_failures(run.before, "before"))
    raised = [r for r in run.actions if r.get("status") != "succeeded"]
    if raised:
        return "FAILED: a method action raised; see the journal", [_action_failure(r, "method") for r in raised]
    if run.status in ("failed", "aborted"):
        return (f"FAILED: chaos ended the run with status {run.status!r}; see the journal",
                _probe_failures(run.after, "after")
                or [Failure("method", "", None, run.status, f"chaos ended the run with status {run.status!r} (method)")])
    if not run.after:
        return ("FAILED: the steady state was not checked after the method",
                [Failure("after", "", None, None, "the steady state was not checked after the method (after)")])
    if expect == "deviate":
        return _decide_reproduction(run)
    if run.after.get("steady_state_met") is not True or run.journal.get("deviated"):
        return "DEVIATED: the hypothesis did not hold", _probe_failures(run.after, "after")
    restore = run.restore_failures()
    if restore:
        return "FAILED: service was not restored after the run", restore
    return "HELD: the hypothesis held and service is healthy", []


def _decide_reproduction(run: _Run) -> tuple[str, list[Failure]]:
    """expect=deviate: the fault must break the hypothesis (on the named probes) and the
    rollback must restore service."""
    if not run.actions:
        return ("FAILED: the experiment declares a reproduction but its method has no action",
                [Failure("expectation", "", None, None, "a reproduction needs an action in its method (expectation)")])
    probes: list[dict[str, Any]] = run.after.get("probes", [])
    wanted = must_deviate_on(run.journal.get("experiment", {}))
    if run.after.get("steady_state_met") is not False:
        held = [p for p in probes if not wanted or p.get("activity", {}).get("name") in wanted]
        return ("NOT REPRODUCED: the hypothesis still held after the fault",
                [_held_failure(p, "the fault was expected to break it") for p in held]
                or [Failure("expectation", "", None, None, "the hypothesis still held after the fault (expectation)")])
    failed = [p.get("activity", {}).get("name") for p in probes if p.get("tolerance_met") is False]
    if wanted and not set(failed) & set(wanted):
        held = [p for p in probes if p.get("activity", {}).get("name") in wanted]
        return (f"NOT REPRODUCED: the hypothesis deviated on {failed}, not on {wanted} as the experiment intends",
                [_held_failure(p, f"the experiment expects a deviation on {wanted}") for p in held]
                + [_probe_failure(p, "after", f"; the experiment expects a deviation on {wanted}")
                   for p in probes if p.get("tolerance_met") is False])
    restore = run.restore_failures()
    if restore:
        return "FAILED: the outage was reproduced, but the rollback did not restore service", restore
    return (f"REPRODUCED: the hypothesis deviated on {', '.join(map(str, failed))} as the fault intended, "
            "and the rollback restored service", [])


def _probe_failures(state: dict[str, Any], phase: str) -> list[Failure]:
    return [_probe_failure(p, phase) for p in state.get("probes", []) if p.get("tolerance_met") is False]


def _probe_failure(run: dict[str, Any], phase: str, why: str = "") -> Failure:
    """A steady-state probe outside its tolerance (or one that raised, so it was never checked)."""
    activity = run.get("activity", {})
    name = str(activity.get("name", "?"))
    tolerance = activity.get("tolerance")
    if run.get("status") == "failed":
        error = exception_text(run)
        return Failure(phase, name, tolerance, error,
                       f"{name} raised {clip(error, 200)}; tolerance {_json(tolerance)} not checked ({phase}){why}")
    output = run.get("output")
    return Failure(phase, name, tolerance, output,
                   f"{name} = {_json(output)} outside tolerance {_json(tolerance)} ({phase}){why}")


def _held_failure(run: dict[str, Any], why: str) -> Failure:
    """A probe a reproduction meant to break that stayed within its tolerance."""
    activity = run.get("activity", {})
    name = str(activity.get("name", "?"))
    value = run.get("output")
    return Failure("expectation", name, activity.get("tolerance"), value,
                   f"{name} = {_json(value)} within tolerance {_json(activity.get('tolerance'))} (after): {why}")


def _action_failure(run: dict[str, Any], phase: str) -> Failure:
    name = str(run.get("activity", {}).get("name", "?"))
    value = exception_text(run)
    return Failure(phase, name, None, value, f"{name} raised {clip(value, 300)} ({phase})")


def exception_text(run: dict[str, Any]) -> str:
    """The last line of an activity's exception in the journal (chaoslib keeps the traceback
    as a list of lines), without chaoslib's ``ActivityFailed`` wrapper and the exception's
    module path: ``ConfigError: endpoint: ... is not an endpoint of the lab``."""
    text = "".join(run.get("exception") or []).strip()
    if not text:
        return f"status {run.get('status')!r}"
    last = text.splitlines()[-1].strip().removeprefix("chaoslib.exceptions.ActivityFailed: ")
    return _MODULE_PATH.sub("", last)


def _json(value: Any) -> str:
    return clip(json.dumps(value, default=str), 200)


def clip(text: str, limit: int = 400) -> str:
    """An activity's output for one line of the verdict: the journal has all of it."""
    return text if len(text) <= limit else text[:limit - 4] + " ..."


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


def _safety_lines(safety: Safety) -> list[str]:
    if safety.error:
        return [f"endpoint check after the run failed: {safety.error}"]
    if safety.restored_by_runner:
        return [f"after the run {safety.restored} did not resolve or answer; chaos-dynamo's safety net "
                f"restored them (the experiment's rollback did not): "
                f"{'ok' if safety.roundtrip else 'FAILED'}"]
    return [f"after the run: {safety.healthy_endpoints} endpoint(s) resolve and answer DynamoDB"]
