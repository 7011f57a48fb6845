"""Stop conditions without a lab: the arguments' checks, one guard check with chaoslib's own
provider and tolerance code, the checker loop on injected waits, the control's hooks in the
order chaoslib calls them, whole chaoslib runs in this process (the interrupt is chaoslib's
real SIGUSR1 handling), and the verdict on a stopped journal."""

from __future__ import annotations

import copy
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import InterruptExecution, InvalidControl

from chaos_dynamo.clock import FakeClock, wait_until
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.safety import stop
from chaos_dynamo.safety.stop import Check, Checker, check_guard, parse, stopped_by
from chaos_dynamo.verify.verdict import Safety, judge_journal

MODULE = __name__
WHERE = "controls[stop-conditions]"


# --- what the probes and actions of these tests call ---------------------------------------------

GUARD_OK = threading.Event()
"""The guard's value: set means healthy."""
HOLDING = threading.Event()
"""Set by :func:`hold` once it holds."""
CHECKED_TWICE = threading.Event()
"""Set by the guard's second check: with a check before the method, one during it."""
LOG: list[str] = []
GUARD_CHECKS: list[bool] = []


def guard_ok() -> bool:
    GUARD_CHECKS.append(GUARD_OK.is_set())
    if len(GUARD_CHECKS) >= 2:
        CHECKED_TWICE.set()
    return GUARD_OK.is_set()


def length(text: str) -> int:
    return len(text)


def raising_guard() -> bool:
    raise RuntimeError("the health endpoint is gone")


def hold(seconds: float = 30.0) -> str:
    """A long action whose cleanup is in a ``finally``, as empty_endpoint_for's restore."""
    HOLDING.set()
    try:
        threading.Event().wait(seconds)
    finally:
        LOG.append("hold's finally")
    return "held"


def hold_until_checked_twice(seconds: float = 60.0) -> str:
    """A hold that ends once the guard was checked a second time (during it), not after a
    fixed time that a busy machine's checker thread might not get a turn in."""
    return "held" if CHECKED_TWICE.wait(seconds) else "the guard was not checked during the hold"


def undo() -> str:
    LOG.append("rollback")
    return "undone"


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    GUARD_OK.set()
    HOLDING.clear()
    CHECKED_TWICE.clear()
    LOG.clear()
    GUARD_CHECKS.clear()
    stop.cleanup_control()
    yield
    stop.cleanup_control()


def guard(name: str = "service-healthy", **changes: Any) -> dict[str, Any]:
    probe: dict[str, Any] = {"type": "probe", "name": name, "tolerance": True,
                             "provider": {"type": "python", "module": MODULE, "func": "guard_ok"}}
    probe.update(changes)
    return probe


# --- the arguments ---------------------------------------------------------------------------------

def without(key: str) -> dict[str, Any]:
    probe = guard()
    del probe[key]
    return probe


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("no probes", {}, f"{WHERE}.probes"),
    ("empty probes", {"probes": []}, f"{WHERE}.probes"),
    ("probes not a list", {"probes": guard()}, f"{WHERE}.probes"),
    ("interval zero", {"probes": [guard()], "interval": 0}, f"{WHERE}.interval"),
    ("interval negative", {"probes": [guard()], "interval": -1}, f"{WHERE}.interval"),
    ("interval huge", {"probes": [guard()], "interval": 7200}, f"{WHERE}.interval"),
    ("interval a string", {"probes": [guard()], "interval": "1"}, f"{WHERE}.interval"),
    ("interval a bool", {"probes": [guard()], "interval": True}, f"{WHERE}.interval"),
    ("rollbacks not a bool", {"probes": [guard()], "rollbacks": "yes"}, f"{WHERE}.rollbacks"),
    ("unknown argument", {"probes": [guard()], "frequency": 2}, f"{WHERE}.provider.arguments"),
    ("probe not an object", {"probes": ["service-healthy"]}, f"{WHERE}.probes[0]"),
    ("missing tolerance", {"probes": [without("tolerance")]}, f"{WHERE}.probes[0].tolerance"),
    ("float tolerance", {"probes": [guard(tolerance=0.5)]}, f"{WHERE}.probes[0].tolerance"),
    ("unknown tolerance type", {"probes": [guard(tolerance={"type": "nope"})]}, f"{WHERE}.probes[0].tolerance"),
    ("unknown provider type", {"probes": [guard(provider={"type": "grpc", "module": "x"})]},
     f"{WHERE}.probes[0].provider.type"),
    ("no provider", {"probes": [without("provider")]}, f"{WHERE}.probes[0].provider"),
    ("python module missing", {"probes": [guard(provider={"type": "python", "module": "no_such_module_x",
                                                          "func": "f"})]}, f"{WHERE}.probes[0].provider"),
    ("an action", {"probes": [guard(type="action")]}, f"{WHERE}.probes[0].type"),
    ("no name", {"probes": [without("name")]}, f"{WHERE}.probes[0].name"),
    ("same name twice", {"probes": [guard(), guard()]}, f"{WHERE}.probes[1].name"),
    ("a ref", {"probes": [{"ref": "endpoint-resolves"}]}, f"{WHERE}.probes[0].ref"),
    ("background", {"probes": [guard(background=True)]}, f"{WHERE}.probes[0].background"),
    ("pauses", {"probes": [guard(pauses={"after": 1})]}, f"{WHERE}.probes[0].pauses"),
]


@pytest.mark.parametrize(("arguments", "field"), [(a, f) for _, a, f in BAD], ids=[i for i, _, _ in BAD])
def test_bad_arguments_name_the_field(arguments: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(arguments)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


def test_good_arguments_of_every_provider_type() -> None:
    probes = [guard(),
              {"type": "probe", "name": "process-ok", "tolerance": 0, "provider": {"type": "process", "path": "true"}},
              {"type": "probe", "name": "health-200", "tolerance": 200,
               "provider": {"type": "http", "url": "http://127.0.0.1:9/health", "timeout": 1}}]
    config = parse({"probes": probes, "interval": 0.5, "rollbacks": False})
    assert config.names == ["service-healthy", "process-ok", "health-200"]
    assert (config.interval, config.rollbacks) == (0.5, False)
    assert parse({"probes": [guard()]}).interval == stop.DEFAULT_INTERVAL


def control(**arguments: Any) -> dict[str, Any]:
    return {"name": "stop-conditions",
            "provider": {"type": "python", "module": "chaos_dynamo.safety.stop", "arguments": arguments}}


def test_validate_control_refuses_bad_arguments_and_declarations_naming_the_field() -> None:
    stop.validate_control(control(probes=[guard()]))
    with pytest.raises(InvalidControl, match=r"^controls\[stop-conditions\]\.probes\[0\]\.tolerance: is missing"):
        stop.validate_control(control(probes=[without("tolerance")]))
    with pytest.raises(InvalidControl, match=r"^controls\[stop-conditions\]\.scope: "):
        stop.validate_control(control(probes=[guard()]) | {"scope": "before"})
    with pytest.raises(InvalidControl, match=r"^controls\[stop-conditions\]\.automatic: "):
        stop.validate_control(control(probes=[guard()]) | {"automatic": False})


def test_chaos_validation_calls_it() -> None:
    from chaoslib.experiment import ensure_experiment_is_valid

    experiment = {"title": "t", "description": "d", "method": [],
                  "controls": [control(probes=[guard()], interval=0)]}
    with pytest.raises(InvalidControl, match=r"controls\[stop-conditions\]\.interval: 0 is not a number"):
        ensure_experiment_is_valid(experiment)


# --- one check -------------------------------------------------------------------------------------

def test_a_check_runs_the_probe_and_its_tolerance_with_chaoslib() -> None:
    clock = FakeClock(1000.0)
    assert check_guard(guard(), clock=clock) == Check("service-healthy", True, True, True, "", 1000.0)
    GUARD_OK.clear()
    failed = check_guard(guard(), clock=clock)
    assert (failed.value, failed.met, failed.describe()) == (False, False, "value false, tolerance true")
    process = {"type": "probe", "name": "exit-code", "tolerance": 0, "provider": {"type": "process", "path": "false"}}
    assert check_guard(process).met is False
    ranged = guard(tolerance={"type": "range", "range": [1, 3]},
                   provider={"type": "python", "module": MODULE, "func": "length", "arguments": {"text": "${s}"}})
    assert check_guard(ranged, {"s": "ab"}).met is True  # configuration substituted, as in a hypothesis
    assert check_guard(ranged, {"s": "abcd"}).value == 4


def test_a_probe_that_raises_is_a_failed_check_not_an_exception() -> None:
    raised = check_guard(guard(provider={"type": "python", "module": MODULE, "func": "raising_guard"}))
    assert raised.met is False and raised.value is None
    assert raised.error == "RuntimeError: the health endpoint is gone"
    assert raised.describe() == "raised RuntimeError: the health endpoint is gone, tolerance true"


# --- the checker loop ------------------------------------------------------------------------------

class Script:
    """A guard's values in turn (True healthy), and the waits the checker asked for."""

    def __init__(self, values: list[bool]) -> None:
        self.values = list(values)
        self.waits: list[float] = []
        self.fired: list[Check] = []

    def check(self, probe: Any) -> Check:
        value = self.values.pop(0)
        return Check(str(probe["name"]), True, value, value)

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return False


def test_the_checker_fires_once_on_the_first_failure_after_waiting_the_interval() -> None:
    script = Script([True, True, True, False, True])
    checker = Checker([guard("a"), guard("b")], 0.5, script.check, script.fired.append, wait=script.wait)
    assert checker.round() is None  # the round before the method
    fired = checker.run()
    assert fired == Check("b", True, False, False)
    assert script.fired == [fired] and checker.fired == fired
    assert script.waits == [0.5]  # one pause, then a round that failed on its second guard
    assert (checker.rounds, checker.checks) == (1, 4)
    assert script.values == [True], "nothing checked after the failure"


def test_a_checker_stopped_before_its_failure_does_not_fire() -> None:
    script = Script([False])
    checker = Checker([guard()], 0.5, script.check, script.fired.append, wait=script.wait)

    def method_ends_during_the_check(probe: Any) -> Check:
        checker.stop()
        return script.check(probe)

    checker._check = method_ends_during_the_check
    assert checker.run() is None
    assert script.fired == [] and checker.fired is None


def test_a_checker_check_that_raises_fails_closed() -> None:
    fired: list[Check] = []

    def broken(probe: Any) -> Check:
        raise KeyError("output")

    assert Checker([guard()], 1.0, broken, fired.append).round() is not None
    assert fired[0].error == "KeyError: 'output'" and fired[0].met is False


def test_the_checker_thread_stops_when_told() -> None:
    checks = threading.Semaphore(0)

    def check(probe: Any) -> Check:
        checks.release()
        return Check("g", True, True, True)

    checker = Checker([guard()], 0.05, check, lambda c: None)
    checker.start()
    assert checks.acquire(timeout=30) and checks.acquire(timeout=30), "it checks round after round"
    checker.stop()
    assert checker._thread is not None and not checker._thread.is_alive()


# --- the control's hooks, in chaoslib's order ------------------------------------------------------

EXPERIMENT: dict[str, Any] = {
    "title": "t", "description": "d",
    "method": [{"type": "action", "name": "hold", "provider": {"type": "python", "module": MODULE, "func": "hold",
                                                               "arguments": {"seconds": 30}}}],
    "rollbacks": [{"type": "action", "name": "undo", "provider": {"type": "python", "module": MODULE,
                                                                  "func": "undo"}}],
}


class Interrupts:
    def __init__(self, delivered: bool = True) -> None:
        self.delivered = delivered
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.delivered


def start(monkeypatch: pytest.MonkeyPatch, delivered: bool = True, **arguments: Any) -> Interrupts:
    interrupts = Interrupts(delivered)
    monkeypatch.setattr(stop, "_interrupt", interrupts)
    args = {"probes": [guard()], "interval": 0.05} | arguments
    stop.configure_control(**args)
    stop.before_experiment_control(EXPERIMENT, **args)
    stop.before_method_control(EXPERIMENT, **args)
    return interrupts


def journal() -> dict[str, Any]:
    return {"status": "interrupted", "run": [], "rollbacks": []}


def test_a_guard_failing_in_the_method_interrupts_once_and_the_control_rolls_back_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    interrupts = start(monkeypatch)
    GUARD_OK.clear()
    assert wait_until(lambda: interrupts.calls > 0, timeout=30)
    stop.after_method_control(EXPERIMENT)
    record = journal()
    stop.after_experiment_control(EXPERIMENT, state=record)
    assert interrupts.calls == 1
    assert LOG == ["rollback"]
    assert [(r["activity"]["name"], r["status"]) for r in record["rollbacks"]] == [("undo", "succeeded")]
    stopped = stopped_by(record)
    assert stopped is not None
    assert (stopped["name"], stopped["value"], stopped["tolerance"], stopped["during"], stopped["rollbacks"]) == (
        "service-healthy", False, True, "method", "run by the stop-conditions control")


def test_when_chaos_plays_the_rollbacks_the_control_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    start(monkeypatch)
    GUARD_OK.clear()
    assert wait_until(lambda: stop._run_state().fired is not None, timeout=30)
    stop.after_method_control(EXPERIMENT)
    stop.before_rollback_control(EXPERIMENT)  # chaos's strategy "always"
    record = journal()
    stop.after_experiment_control(EXPERIMENT, state=record)
    assert LOG == [] and record["rollbacks"] == []
    assert stopped_by(record)["rollbacks"].startswith("run by chaos")  # type: ignore[index]


def test_rollbacks_false_leaves_them_to_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    start(monkeypatch, rollbacks=False)
    GUARD_OK.clear()
    assert wait_until(lambda: stop._run_state().fired is not None, timeout=30)
    stop.after_method_control(EXPERIMENT)
    record = journal()
    stop.after_experiment_control(EXPERIMENT, state=record)
    assert LOG == [] and stopped_by(record)["rollbacks"].startswith("not run")  # type: ignore[index]


def test_a_guard_failing_before_the_method_keeps_it_from_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    GUARD_OK.clear()
    with pytest.raises(InterruptExecution, match="stop condition service-healthy fired before the method"):
        start(monkeypatch)
    stop.after_method_control(EXPERIMENT)
    record = journal()
    stop.after_experiment_control(EXPERIMENT, state=record)
    assert LOG == [] and stop._interrupt.calls == 0  # type: ignore[attr-defined]
    stopped = stopped_by(record)
    assert stopped is not None and stopped["during"] == "before the method"
    assert stopped["rollbacks"] == "not run (the method did not start)"


def test_without_chaoslib_s_signal_handler_the_next_activity_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    start(monkeypatch, delivered=False)
    stop.before_activity_control(EXPERIMENT["method"][0])  # healthy: nothing to refuse
    GUARD_OK.clear()
    assert wait_until(lambda: stop._run_state().fired is not None, timeout=30)
    with pytest.raises(InterruptExecution, match="stop condition service-healthy fired: value false"):
        stop.before_activity_control(EXPERIMENT["method"][0])
    stop.after_method_control(EXPERIMENT)
    with pytest.raises(InterruptExecution):  # nor is the hypothesis after the method checked
        stop.before_hypothesis_control({})


def test_bad_arguments_refuse_the_run_at_its_start_too() -> None:
    """``chaos run --no-validation``: chaoslib ignores exceptions from configure_control, so
    the check is in before_experiment_control, as InterruptExecution (the one it honours)."""
    stop.configure_control(probes=[without("tolerance")])
    with pytest.raises(InterruptExecution, match=r"controls\[stop-conditions\]\.probes\[0\]\.tolerance: is missing"):
        stop.before_experiment_control(EXPERIMENT, probes=[without("tolerance")])
    record = journal()
    stop.after_experiment_control(EXPERIMENT, state=record)
    assert "extensions" not in record


def test_no_signal_without_chaoslib_s_handler() -> None:
    """The default action of SIGUSR1 would kill the process, rollbacks and all."""
    previous = signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    try:
        assert stop.interrupt_main_thread() is False
    finally:
        signal.signal(signal.SIGUSR1, previous)


# --- whole chaoslib runs in this process ---------------------------------------------------------

def experiment_with_guard(**arguments: Any) -> dict[str, Any]:
    experiment = copy.deepcopy(EXPERIMENT)
    experiment["controls"] = [control(**({"probes": [guard()], "interval": 0.05} | arguments))]
    return experiment


def run_and_trip(experiment: dict[str, Any], strategy: str = "default") -> dict[str, Any]:
    """chaoslib runs the experiment here (its SIGUSR1 handler installed for the run); the
    guard turns unhealthy once the hold holds."""
    from chaoslib.experiment import run_experiment

    def trip() -> None:
        if HOLDING.wait(60):
            GUARD_OK.clear()

    tripper = threading.Thread(target=trip, daemon=True)
    tripper.start()
    result: dict[str, Any] = run_experiment(experiment, settings={"runtime": {"rollbacks": {"strategy": strategy}}})
    tripper.join(5)
    return result


@pytest.mark.parametrize(("strategy", "by"), [("default", "run by the stop-conditions control"),
                                              ("never", "run by the stop-conditions control"),
                                              ("always", "run by chaos")])
def test_chaoslib_run_is_interrupted_mid_hold_and_rolled_back_once(strategy: str, by: str) -> None:
    result = run_and_trip(experiment_with_guard(), strategy)
    assert result["status"] == "interrupted"
    (hold_run,) = result["run"]
    assert "status" not in hold_run and hold_run["duration"] < 15, "the 30 s hold was cut short"
    assert LOG == ["hold's finally", "rollback"], "the hold's cleanup ran, then the rollback, once"
    assert [r["activity"]["name"] for r in result["rollbacks"]] == ["undo"]
    stopped = stopped_by(result)
    assert stopped is not None and stopped["rollbacks"].startswith(by)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL, "chaoslib put its handler back"


def test_chaoslib_run_with_a_guard_that_never_fails_completes_as_without_it() -> None:
    quick = copy.deepcopy(EXPERIMENT)
    quick["method"][0]["provider"].update(func="hold_until_checked_twice", arguments={})
    from chaoslib.experiment import run_experiment

    guarded = experiment_with_guard()
    guarded["method"] = quick["method"]
    with_guard = run_experiment(guarded)
    assert len(GUARD_CHECKS) >= 2
    CHECKED_TWICE.set()  # no guard checks the run without one: its hold ends at once
    without = run_experiment(quick)
    for result in (with_guard, without):
        assert result["status"] == "completed"
        assert [(r["activity"]["name"], r["status"], r["output"]) for r in result["run"]] == [
            ("hold", "succeeded", "held")]
        assert [r["activity"]["name"] for r in result["rollbacks"]] == ["undo"]  # chaos's default strategy
    (entry,) = with_guard["extensions"]
    assert entry["stopped"] is None and entry["checks"] >= 2
    assert "extensions" not in without


# --- the verdict -----------------------------------------------------------------------------------

def stopped_journal(during: str = "method", error: str = "") -> dict[str, Any]:
    return {"experiment": {"title": "t", "steady-state-hypothesis": {"title": "h"}}, "status": "interrupted",
            "steady_states": {"before": {"steady_state_met": True, "probes": []}, "after": None},
            "run": [{"activity": {"name": "empty-the-endpoint-for-a-minute", "type": "action"}}],
            "rollbacks": [{"activity": {"name": "restore-the-endpoint", "type": "action"}, "status": "succeeded"}],
            "extensions": [{"name": "stop-conditions", "guards": ["checkout-healthy"], "checks": 9, "rounds": 9,
                            "stopped": {"name": "checkout-healthy", "value": None if error else 503,
                                        "tolerance": 200, "error": error, "during": during,
                                        "at": "2025-10-20T07:00:00+00:00", "seconds_into_method": 1.5,
                                        "rollbacks": "run by the stop-conditions control"}}]}


@pytest.mark.parametrize("expect", ["hold", "deviate"])
def test_the_verdict_names_the_stop_condition_and_fails(expect: str) -> None:
    verdict = judge_journal(stopped_journal(), expect, 1, Safety(3, True, False), interrupted=False)
    assert verdict.status == "failed"
    assert verdict.headline == "FAILED: stopped by stop condition checkout-healthy: value 503, tolerance 200"
    (failure,) = verdict.failures
    assert (failure.phase, failure.activity, failure.tolerance, failure.value) == ("method", "checkout-healthy", 200,
                                                                                   503)
    assert "method: empty-the-endpoint-for-a-minute interrupted (did not finish)" in verdict.lines
    assert any(line.startswith("stop conditions: stopped by stop condition checkout-healthy") and
               "1.5 s into the method" in line and "rollbacks run by the stop-conditions control" in line
               for line in verdict.lines)


def test_the_verdict_on_a_guard_that_raised_or_fired_before_the_method() -> None:
    raised = judge_journal(stopped_journal(error="RuntimeError: gone"), "hold", 1, Safety(3, True, False), False)
    assert raised.headline == "FAILED: stopped by stop condition checkout-healthy: raised RuntimeError: gone, " \
                              "tolerance 200"
    before = judge_journal(stopped_journal(during="before the method"), "hold", 1, Safety(3, True, False), False)
    assert before.headline.endswith("(before the method, which did not run)")
    assert before.failures[0].phase == "before"


def test_the_safety_net_restoring_after_a_stop_is_a_failure_too() -> None:
    verdict = judge_journal(stopped_journal(), "hold", 1, Safety(3, True, True, restored=["dynamodb"]), False)
    assert [f.phase for f in verdict.failures] == ["method", "safety"]


def test_a_report_reads_a_stopped_journal_as_failed_not_ctrl_c(tmp_path: Path) -> None:
    import json

    from chaos_dynamo.report.model import verdict_from_journal

    path = tmp_path / "journal.json"
    path.write_text(json.dumps(stopped_journal()))
    assert verdict_from_journal(path, stopped_journal()).status == "failed"


# --- a lost interrupt is sent again ----------------------------------------------------------

def test_a_lost_interrupt_is_sent_again_until_the_activity_it_hit_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python drops a signal handler's exception raised inside a gc callback: the hold the
    guard interrupted goes on, so the interrupt is sent again until that activity ends."""
    sent: list[int] = []
    monkeypatch.setattr(stop, "_interrupt", lambda: sent.append(1) or True)
    run = stop._Run(in_method=True, activities_started=1, activities_ended=0)
    waits = 0

    def wait(seconds: float) -> bool:
        nonlocal waits
        waits += 1
        if waits == 3:  # the third re-send lands: chaoslib ends the activity
            run.activities_ended = 1
        return False

    assert run.keep_interrupting(1, wait=wait) == 2
    assert len(sent) == 2


def test_nothing_is_sent_again_once_the_method_is_over(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[int] = []
    monkeypatch.setattr(stop, "_interrupt", lambda: sent.append(1) or True)
    run = stop._Run(in_method=False, activities_started=1, activities_ended=0)
    assert run.keep_interrupting(1, wait=lambda s: False) == 0
    run = stop._Run(in_method=True, activities_started=1, activities_ended=0)
    assert run.keep_interrupting(1, wait=lambda s: False) == stop.RESIGNAL_LIMIT  # bounded
    assert not sent[stop.RESIGNAL_LIMIT:]


def test_after_a_guard_fired_the_next_method_activity_is_refused_even_if_signalled() -> None:
    stop._current = stop._Run(in_method=True, signalled=True,
                              fired=Check("g", True, False, False))
    with pytest.raises(InterruptExecution, match="stop condition g fired"):
        stop.before_activity_control({})
    stop._current = None
