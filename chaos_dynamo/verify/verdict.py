"""The verdict on one experiment's journal: pure code over the journal and the safety check.

``chaos run`` exits 0 when the steady state fails *before* the method and when a method
action raises, so a CI gate cannot trust its exit code. :func:`judge_journal` reads the
journal and decides, in this order (the first rule that applies gives the headline):

==============================================  ==========  ==========================
what happened                                   status      failures (phase)
==============================================  ==========  ==========================
interrupted by chaos-dynamo (Ctrl-C, SIGTERM,   interrupted
SIGHUP)
no journal (chaos crashed, could not start)     error
a stop condition fired (the journal's           failed      the guard (method or
``stop-conditions`` entry)                                  before), then rollbacks
                                                            and safety net as below
chaos interrupted the run itself (a control     failed      (method), then rollbacks
or safeguard raised InterruptExecution)                     and safety net as below
steady state not met before the method          failed      the probe (before)
steady state not checked before the method      failed      (before)
a method action raised                          failed      each such action (method)
chaos ended with status failed/aborted          failed      raising probes (after)
no hypothesis, expect=deviate                   failed      (expectation)
no hypothesis, expect=hold: rollback failed     failed      (rollback) / (safety)
or the safety net restored; else passed
steady state not checked after the method       failed      (after)
expect=deviate: no action in the method         failed      (expectation)
expect=deviate: the hypothesis held             failed      the probes that held
expect=deviate: deviated on other probes        failed      (expectation)
rollback failed or the safety net restored      failed      (rollback) / (safety)
expect=hold: the hypothesis deviated            failed      the probes (after)
==============================================  ==========  ==========================

A stop condition (:mod:`chaos_dynamo.safety.stop`) that fired is the headline whatever the
experiment expects: ``stopped by stop condition NAME: value V, tolerance T``.

Chaos Toolkit allows an experiment without a ``steady-state-hypothesis`` ("just
exploring"): the before/after rules do not apply to it, but raised actions, rollbacks and
the safety net do; it cannot deviate, so ``expect: deviate`` fails.

A verdict's status is decided explicitly, never read off an empty failure list, and a
``failed`` verdict always carries at least one :class:`Failure` (:class:`Verdict` adds one
from the headline if a rule gave none), so no failing rule can turn into a pass.

Each :class:`Failure` carries the activity's name, its tolerance and its value (a probe's
output, an action's exception), so a CI report can say ``endpoint-resolves = 0 outside
tolerance {"type": "range", "range": [1, 1000]} (after)`` without opening the journal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_dynamo.verify.experiments import must_deviate_on

STATUSES = ("passed", "failed", "error", "interrupted")
_MODULE_PATH = re.compile(r"^(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_]\w*:)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CRITICAL = re.compile(r"^\[[^\]\n]* CRITICAL\] (?:\[[\w.]+:\d+\] )?(.*)$", re.M)


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
    """Whether the experiment did what it declares: a status (one of :data:`STATUSES`), a
    headline, the lines behind it and the failures, first the one to read first.

    ``failed`` always comes with a failure (one is made from the headline when none is
    given); ``passed`` never does (ValueError: a rule contradicts itself).
    """

    status: str
    headline: str
    lines: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"verdict status {self.status!r} is not one of {STATUSES}")
        if self.status == "passed" and self.failures:
            raise ValueError(f"a passing verdict with failures: {self.failures}")
        if self.status == "failed" and not self.failures:
            self.failures = [Failure("expectation", "", None, None, self.headline)]

    @property
    def ok(self) -> bool:
        """The experiment did what it declares."""
        return self.status == "passed"


def judge(journal_path: Path, expect: str, chaos_exit: int, safety: Safety, interrupted: bool) -> Verdict:
    """Read the journal at ``journal_path`` and decide (see :func:`judge_journal`).

    When chaos marked the run interrupted on its own, its reason is read from the chaos log
    next to the journal (``<journal>.log``, where the runner sends it).
    """
    try:
        journal = json.loads(journal_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        return judge_journal(None, expect, chaos_exit, safety, interrupted, missing=str(exc))
    reason = ""
    if isinstance(journal, dict) and journal.get("status") == "interrupted" and not interrupted:
        reason = chaos_critical(journal_path.with_suffix(".log"))
    return judge_journal(journal, expect, chaos_exit, safety, interrupted, chaos_reason=reason)


def judge_journal(journal: dict[str, Any] | None, expect: str, chaos_exit: int, safety: Safety,
                  interrupted: bool, missing: str = "", chaos_reason: str = "") -> Verdict:
    """Decide whether the run did what the experiment declares (rules in the module docstring).

    Args:
        journal: the journal chaos wrote, or None when there is none (``missing`` says why).
        expect: ``hold`` or ``deviate`` (the experiment's chaos-dynamo extension).
        chaos_exit: the exit code of ``chaos run`` (reported, never trusted alone).
        safety: the endpoints as found after the run.
        interrupted: chaos-dynamo cut the run short (Ctrl-C, SIGTERM, SIGHUP). A journal
            that chaos marked ``interrupted`` without it is a failed run, not Ctrl-C.
        chaos_reason: why chaos interrupted the run by itself, when known (its log).
    """
    lines = ["the run was interrupted (Ctrl-C)"] if interrupted else []
    if journal is None:
        lines += _safety_lines(safety)
        if interrupted:
            return Verdict("interrupted", "INTERRUPTED: the run did not finish (no journal)", lines)
        return Verdict("error", f"ERROR: no journal from chaos ({missing}); chaos exited {chaos_exit}", lines)
    run = _Run(journal, safety)
    lines += run.lines(expect, chaos_exit)
    if interrupted:
        return Verdict("interrupted", "INTERRUPTED: the run did not finish"
                       + ("; the endpoint is restored" if safety.roundtrip else ""), lines)
    passed, headline, failures = _decide(run, expect, chaos_reason)
    return Verdict("passed" if passed else "failed", headline, lines, failures)


class _Run:
    """The parts of a journal the rules read."""

    def __init__(self, journal: dict[str, Any], safety: Safety) -> None:
        steady = journal.get("steady_states") or {}
        experiment = journal.get("experiment") or {}
        self.journal = journal
        self.safety = safety
        self.before: dict[str, Any] = steady.get("before") or {}
        self.after: dict[str, Any] = steady.get("after") or {}
        # chaos allows none ("just exploring"): then it writes no steady state at all.
        self.hypothesis = bool(experiment.get("steady-state-hypothesis")) or bool(self.before)
        self.actions = [r for r in _records(journal.get("run")) if r.get("activity", {}).get("type") == "action"]
        self.rollbacks = _records(journal.get("rollbacks"))
        self.status = journal.get("status")
        from chaos_dynamo.safety.stop import guard_record, stopped_by

        self.guards = guard_record(journal)
        self.stopped = stopped_by(journal)

    def lines(self, expect: str, chaos_exit: int) -> list[str]:
        """What happened, one line per step, as the runner prints it."""
        out = [f"experiment: {self.journal.get('experiment', {}).get('title', '?')}  "
               f"(chaos status {self.status!r}, exit {chaos_exit}; expected to {expect})"]
        if not self.hypothesis:
            out.append("steady state: none (the experiment has no steady-state-hypothesis)")
        else:
            out.append(f"steady state before: {'met' if self.before.get('steady_state_met') else 'NOT met'}")
        out += [f"  {x}" for x in _probe_lines(self.before.get("probes", []))]
        for r in self.actions:
            if r.get("status") is None:  # chaos was interrupted while it ran
                out.append(f"method: {r['activity'].get('name')} interrupted (did not finish)")
                continue
            out.append(f"method: {r['activity'].get('name')} {r.get('status')}"
                       + (f": {clip(json.dumps(r.get('output'), default=str))}" if r.get("status") == "succeeded"
                          else f": {clip(exception_text(r), 300)}"))
        out += _guard_lines(self.guards, self.stopped)
        if self.after:
            out.append(f"steady state after: {'met' if self.after.get('steady_state_met') else 'NOT met (deviated)'}")
            out += [f"  {x}" for x in _probe_lines(self.after.get("probes", []))]
        out += [f"rollback: {r['activity'].get('name')} {r.get('status')}" for r in self.rollbacks]
        return out + _safety_lines(self.safety)

    def restore_failures(self) -> list[Failure]:
        """Rollbacks that raised, and what the safety net found broken after the run."""
        failures = [_action_failure(r, "rollback") for r in _raised(self.rollbacks)]
        s = self.safety
        if s.error:
            failures.append(Failure("safety", "", None, s.error, f"the endpoint check after the run failed: "
                                                                f"{s.error} (safety)"))
        elif s.restored_by_runner or not s.roundtrip:
            failures.append(Failure("safety", "", None, s.restored,
                                    f"after the run {s.restored} did not resolve or answer; chaos-dynamo's "
                                    f"safety net restored them: {'ok' if s.roundtrip else 'FAILED'} (safety)"))
        return failures


_Decision = tuple[bool, str, list[Failure]]
"""(passed, headline, failures): every rule says explicitly whether the run passed."""


def _failed(headline: str, failures: list[Failure]) -> _Decision:
    return False, headline, failures


def _decide(run: _Run, expect: str, chaos_reason: str = "") -> _Decision:
    """The verdict's rules in order (module docstring); the first that applies decides."""
    if run.stopped is not None:
        what = stop_text(run.stopped)
        phase = "before" if run.stopped.get("during") == "before the method" else "method"
        return _failed(f"FAILED: {what}",
                       [Failure(phase, str(run.stopped.get("name", "?")), run.stopped.get("tolerance"),
                                run.stopped.get("error") or run.stopped.get("value"), f"{what} ({phase})")]
                       + run.restore_failures())
    if run.status == "interrupted":  # chaos-dynamo's own interrupt was handled before
        reason = chaos_reason or ("a control or safeguard raised InterruptExecution, or chaos got a signal "
                                  "chaos-dynamo did not send; see the chaos log")
        return _failed(f"FAILED: chaos interrupted the run: {clip(reason, 200)}",
                       [Failure("method", "", None, reason, f"chaos interrupted the run: {clip(reason, 300)} (method)")]
                       + run.restore_failures())
    if run.hypothesis and not run.before.get("steady_state_met"):
        if not run.before:
            return _failed("FAILED: the steady state was not checked before the method",
                           [Failure("before", "", None, None, "the steady state was not checked before the "
                                                              "method (before)")])
        return _failed("FAILED: the steady state did not hold before the method, so nothing was tested "
                       "(is the lab healthy?)", _probe_failures(run.before, "before"))
    if not run.hypothesis and expect == "deviate":
        return _failed("FAILED: the experiment declares a reproduction but has no steady-state-hypothesis, "
                       "so it cannot deviate",
                       [Failure("expectation", "", None, None, "a reproduction needs a steady-state-hypothesis "
                                                               "that the fault breaks (expectation)")])
    raised = _raised(run.actions)
    if raised:
        return _failed("FAILED: a method action raised; see the journal", [_action_failure(r, "method") for r in raised])
    if run.status in ("failed", "aborted"):
        return _failed(f"FAILED: chaos ended the run with status {run.status!r}; see the journal",
                       _probe_failures(run.after, "after")
                       or [Failure("method", "", None, run.status,
                                   f"chaos ended the run with status {run.status!r} (method)")])
    if not run.hypothesis:
        return _decide_without_hypothesis(run)
    if not run.after:
        return _failed("FAILED: the steady state was not checked after the method",
                       [Failure("after", "", None, None, "the steady state was not checked after the method (after)")])
    if expect == "deviate":
        return _decide_reproduction(run)
    if run.after.get("steady_state_met") is not True or run.journal.get("deviated"):
        return _failed("DEVIATED: the hypothesis did not hold", _probe_failures(run.after, "after"))
    restore = run.restore_failures()
    if restore:
        return _failed("FAILED: service was not restored after the run", restore)
    return True, "HELD: the hypothesis held and service is healthy", []


def _decide_without_hypothesis(run: _Run) -> _Decision:
    """expect=hold, no steady-state-hypothesis: every action ran; rollbacks and the safety
    net still judge what the run left behind."""
    restore = run.restore_failures()
    if restore:
        return _failed("FAILED: service was not restored after the run", restore)
    return (True, "RAN: no steady-state hypothesis to check; every action succeeded and service is healthy",
            [])


def _decide_reproduction(run: _Run) -> _Decision:
    """expect=deviate: the fault must break the hypothesis (on the named probes) and the
    rollback must restore service."""
    if not run.actions:
        return _failed("FAILED: the experiment declares a reproduction but its method has no action",
                       [Failure("expectation", "", None, None,
                                "a reproduction needs an action in its method (expectation)")])
    probes = _records(run.after.get("probes"))
    wanted = must_deviate_on(run.journal.get("experiment", {}))
    if run.after.get("steady_state_met") is not False:
        held = [p for p in probes if not wanted or p.get("activity", {}).get("name") in wanted]
        return _failed("NOT REPRODUCED: the hypothesis still held after the fault",
                       [_held_failure(p, "the fault was expected to break it") for p in held]
                       or [Failure("expectation", "", None, None,
                                   "the hypothesis still held after the fault (expectation)")])
    failed = [p.get("activity", {}).get("name") for p in probes if p.get("tolerance_met") is False]
    if wanted and not set(failed) & set(wanted):
        held = [p for p in probes if p.get("activity", {}).get("name") in wanted]
        return _failed(f"NOT REPRODUCED: the hypothesis deviated on {failed}, not on {wanted} as the experiment "
                       "intends",
                       [_held_failure(p, f"the experiment expects a deviation on {wanted}") for p in held]
                       + [_probe_failure(p, "after", f"; the experiment expects a deviation on {wanted}")
                          for p in probes if p.get("tolerance_met") is False])
    restore = run.restore_failures()
    if restore:
        return _failed("FAILED: the outage was reproduced, but the rollback did not restore service", restore)
    return (True, f"REPRODUCED: the hypothesis deviated on {', '.join(map(str, failed))} as the fault intended, "
                  "and the rollback restored service", [])


def journal_failures(journal: Mapping[str, Any]) -> list[Failure]:
    """Everything in a journal that failed, in the order chaos ran it: steady-state probes
    outside their tolerance (or that raised) before the method, method activities that
    raised, probes outside tolerance after it, rollbacks that raised. No verdict is implied
    (a reproduction's "after" probes are meant to fail): what a report shows when it has
    no verdict's failures to go by."""
    steady = journal.get("steady_states") or {}
    return (_probe_failures(steady.get("before") or {}, "before")
            + [_action_failure(r, "method") for r in _raised(_records(journal.get("run")))]
            + _probe_failures(steady.get("after") or {}, "after")
            + [_action_failure(r, "rollback") for r in _raised(_records(journal.get("rollbacks")))])


def chaos_critical(log: Path) -> str:
    """The last CRITICAL line of a chaos log (console or log-file format), without its time,
    level and source: chaos logs why a control or safeguard interrupted the run that way.
    "" when the log is missing or has none."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    found = _CRITICAL.findall(_ANSI.sub("", text))
    return found[-1].strip() if found else ""


def _records(value: object) -> list[dict[str, Any]]:
    """The activity records of a journal list (anything else in it ignored)."""
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def _raised(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") != "succeeded"]


def _probe_failures(state: Mapping[str, Any], phase: str) -> list[Failure]:
    return [_probe_failure(p, phase) for p in _records(state.get("probes")) if p.get("tolerance_met") is False]


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
    """An activity that raised (an action; in the method, a probe too)."""
    name = str(run.get("activity", {}).get("name", "?"))
    value = exception_text(run)
    return Failure(phase, name, None, value, f"{name} raised {clip(value, 300)} ({phase})")


def exception_text(run: Mapping[str, Any]) -> str:
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


def stop_text(stopped: Mapping[str, Any]) -> str:
    """``stopped by stop condition NAME: value V, tolerance T`` (``raised E`` for a guard
    that raised), and when it fired before the method."""
    name = stopped.get("name", "?")
    what = f"raised {clip(str(stopped['error']), 200)}" if stopped.get("error") else f"value {_json(stopped.get('value'))}"
    when = " (before the method, which did not run)" if stopped.get("during") == "before the method" else ""
    return f"stopped by stop condition {name}: {what}, tolerance {_json(stopped.get('tolerance'))}{when}"


def _guard_lines(guards: Mapping[str, Any] | None, stopped: Mapping[str, Any] | None) -> list[str]:
    if not guards:
        return []
    checked = f"{guards.get('checks', 0)} check(s) of {', '.join(map(str, guards.get('guards') or []))}"
    if stopped is None:
        return [f"stop conditions: none fired ({checked})"]
    at = stopped.get("seconds_into_method")
    into = f" {at} s into the method" if at is not None else ""
    return [f"stop conditions: {stop_text(stopped)}; fired{into} at {stopped.get('at')} after {checked}; "
            f"rollbacks {stopped.get('rollbacks') or 'not recorded'}"]


def _safety_lines(safety: Safety) -> list[str]:
    if safety.error:
        return [f"endpoint check after the run failed: {safety.error}"]
    if safety.restored_by_runner:
        return [f"after the run {safety.restored} did not resolve or answer; chaos-dynamo's safety net "
                f"restored them (the experiment's rollback did not): "
                f"{'ok' if safety.roundtrip else 'FAILED'}"]
    return [f"after the run: {safety.healthy_endpoints} endpoint(s) resolve and answer DynamoDB"]
