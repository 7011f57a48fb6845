"""verify's verdict rules on synthetic journals: status, headline and the structured failures
(activity, tolerance, value, phase) for every rule, and the one-line messages CI shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.verify.verdict import (
    Failure,
    Safety,
    Verdict,
    exception_text,
    judge,
    judge_journal,
)

HEALTHY = Safety(3, True, False)
RANGE = {"type": "range", "range": [1, 1000]}
TRACEBACK = ["Traceback (most recent call last):\n", "  File \"x.py\", line 1\n",
             "chaoslib.exceptions.ActivityFailed: chaos_dynamo.errors.ConfigError: endpoint: 'eu' "
             "is not an endpoint of the lab\n"]


def probe(name: str, output: Any, met: bool, tolerance: Any = RANGE, raised: bool = False) -> dict[str, Any]:
    run: dict[str, Any] = {"activity": {"name": name, "type": "probe", "tolerance": tolerance},
                           "status": "failed" if raised else "succeeded", "tolerance_met": met}
    if raised:
        run["exception"] = TRACEBACK
    else:
        run["output"] = output
    return run


def action(name: str, ok: bool = True) -> dict[str, Any]:
    run: dict[str, Any] = {"activity": {"name": name, "type": "action"}, "status": "succeeded" if ok else "failed"}
    if ok:
        run["output"] = {"done": True}
    else:
        run["exception"] = TRACEBACK
    return run


def journal(before: list[dict[str, Any]] | None = None, after: list[dict[str, Any]] | None = None,
            method: list[dict[str, Any]] | None = None, rollbacks: list[dict[str, Any]] | None = None,
            status: str = "completed", deviates: list[str] | None = None) -> dict[str, Any]:
    """A journal as chaoslib writes it; ``after=None`` means the hypothesis was not run after."""
    before = before if before is not None else [probe("endpoint-resolves", 1, True)]
    steady: dict[str, Any] = {"before": {"steady_state_met": all(p["tolerance_met"] for p in before),
                                         "probes": before}}
    if after is not None:
        steady["after"] = {"steady_state_met": all(p["tolerance_met"] for p in after), "probes": after}
    ext: dict[str, Any] = {"name": "chaos-dynamo"}
    if deviates:
        ext["deviates"] = deviates
    return {"experiment": {"title": "t", "extensions": [ext]}, "status": status,
            "deviated": after is not None and not steady["after"]["steady_state_met"],
            "steady_states": steady, "run": method if method is not None else [action("break-it")],
            "rollbacks": rollbacks if rollbacks is not None else [action("restore")]}


def verdict(data: dict[str, Any] | None, expect: str = "hold", safety: Safety = HEALTHY,
            interrupted: bool = False, chaos_exit: int = 0) -> Verdict:
    return judge_journal(data, expect, chaos_exit, safety, interrupted, missing="no such file")


def only(v: Verdict) -> Failure:
    assert len(v.failures) == 1, v.failures
    return v.failures[0]


def test_a_baseline_that_fails_before_the_method_fails_with_the_probe_value_and_tolerance() -> None:
    v = verdict(journal(before=[probe("endpoint-has-ipv6", 0, False)], after=None), chaos_exit=0)
    assert (v.ok, v.status) == (False, "failed")
    assert "did not hold before the method" in v.headline
    f = only(v)
    assert (f.phase, f.activity, f.tolerance, f.value) == ("before", "endpoint-has-ipv6", RANGE, 0)
    assert f.message == 'endpoint-has-ipv6 = 0 outside tolerance {"type": "range", "range": [1, 1000]} (before)'


def test_a_baseline_probe_that_raised_names_its_exception() -> None:
    v = verdict(journal(before=[probe("endpoint-resolves", None, False, raised=True)], after=None))
    f = only(v)
    assert (f.phase, f.activity, f.tolerance) == ("before", "endpoint-resolves", RANGE)
    assert f.value == "ConfigError: endpoint: 'eu' is not an endpoint of the lab"
    assert f.message.startswith("endpoint-resolves raised ConfigError: endpoint: 'eu'")
    assert "not checked (before)" in f.message


@pytest.mark.parametrize("expect", ["hold", "deviate"])
def test_a_method_action_that_raised_fails_even_when_the_hypothesis_looks_right(expect: str) -> None:
    after = [probe("endpoint-resolves", 0 if expect == "deviate" else 1, expect == "hold")]
    v = verdict(journal(after=after, method=[action("ok-one"), action("empty-the-endpoint", ok=False)]), expect)
    assert (v.ok, v.status) == (False, "failed") and "a method action raised" in v.headline
    f = only(v)
    assert (f.phase, f.activity, f.tolerance) == ("method", "empty-the-endpoint", None)
    assert f.value == "ConfigError: endpoint: 'eu' is not an endpoint of the lab"
    assert f.message == "empty-the-endpoint raised ConfigError: endpoint: 'eu' is not an endpoint of the lab (method)"


def test_a_hold_experiment_that_deviated_names_every_probe_outside_tolerance() -> None:
    after = [probe("endpoint-resolves", 0, False), probe("roundtrip", False, False, tolerance=True)]
    v = verdict(journal(after=after), "hold", chaos_exit=1)
    assert (v.ok, v.status) == (False, "failed") and v.headline.startswith("DEVIATED")
    assert [(f.phase, f.activity, f.value, f.tolerance) for f in v.failures] == [
        ("after", "endpoint-resolves", 0, RANGE), ("after", "roundtrip", False, True)]
    assert v.failures[1].message == "roundtrip = false outside tolerance true (after)"


def test_a_hold_experiment_that_held_passes() -> None:
    v = verdict(journal(after=[probe("endpoint-resolves", 1, True)]), "hold")
    assert (v.ok, v.status, v.failures) == (True, "passed", [])
    assert v.headline.startswith("HELD")


def test_a_reproduction_that_did_not_deviate_names_the_probe_that_held() -> None:
    data = journal(after=[probe("endpoint-resolves", 1, True), probe("other", 5, True)],
                   deviates=["endpoint-resolves"])
    v = verdict(data, "deviate")
    assert (v.ok, v.status) == (False, "failed") and v.headline.startswith("NOT REPRODUCED")
    f = only(v)
    assert (f.phase, f.activity, f.value, f.tolerance) == ("expectation", "endpoint-resolves", 1, RANGE)
    assert f.message.startswith('endpoint-resolves = 1 within tolerance {"type": "range", "range": [1, 1000]} (after)')


def test_a_reproduction_that_deviated_on_the_wrong_probe_fails() -> None:
    data = journal(after=[probe("endpoint-resolves", 2, True), probe("latency", 9.5, False, tolerance=[0, 1])],
                   deviates=["endpoint-resolves"])
    v = verdict(data, "deviate", chaos_exit=1)
    assert not v.ok and "not on ['endpoint-resolves']" in v.headline
    assert [(f.phase, f.activity, f.value) for f in v.failures] == [
        ("expectation", "endpoint-resolves", 2), ("after", "latency", 9.5)]
    assert "expects a deviation on ['endpoint-resolves']" in v.failures[1].message


def test_a_reproduction_that_deviated_as_intended_and_was_restored_passes() -> None:
    data = journal(after=[probe("endpoint-resolves", 0, False)], deviates=["endpoint-resolves"])
    v = verdict(data, "deviate", chaos_exit=1)
    assert (v.ok, v.status, v.failures) == (True, "passed", [])
    assert "REPRODUCED: the hypothesis deviated on endpoint-resolves" in v.headline


def test_a_reproduction_without_an_action_fails() -> None:
    v = verdict(journal(after=[probe("endpoint-resolves", 0, False)], method=[]), "deviate")
    assert not v.ok and "no action" in v.headline
    assert only(v).phase == "expectation"


@pytest.mark.parametrize("expect", ["hold", "deviate"])
def test_a_rollback_that_raised_fails(expect: str) -> None:
    after = [probe("endpoint-resolves", 0 if expect == "deviate" else 1, expect == "hold")]
    v = verdict(journal(after=after, rollbacks=[action("restore", ok=False)]), expect)
    assert not v.ok and "restore" in v.headline
    f = only(v)
    assert (f.phase, f.activity, f.tolerance) == ("rollback", "restore", None)
    assert f.message.startswith("restore raised ConfigError")


@pytest.mark.parametrize("expect", ["hold", "deviate"])
def test_service_restored_only_by_the_safety_net_fails(expect: str) -> None:
    after = [probe("endpoint-resolves", 0 if expect == "deviate" else 1, expect == "hold")]
    safety = Safety(3, True, True, restored=["dynamodb.us-east-1.amazonaws.com"])
    v = verdict(journal(after=after), expect, safety=safety)
    assert not v.ok
    f = only(v)
    assert (f.phase, f.value) == ("safety", ["dynamodb.us-east-1.amazonaws.com"])
    assert "safety net restored them: ok (safety)" in f.message


def test_an_endpoint_check_that_failed_after_the_run_fails() -> None:
    v = verdict(journal(after=[probe("endpoint-resolves", 1, True)]), safety=Safety(0, False, False, "LabError: gone"))
    assert not v.ok and only(v).phase == "safety" and only(v).value == "LabError: gone"


def test_a_hypothesis_not_checked_after_the_method_fails() -> None:
    v = verdict(journal(after=None))
    assert not v.ok and "not checked after" in v.headline and only(v).phase == "after"


def test_an_after_probe_that_raised_is_named_when_chaos_ends_failed() -> None:
    v = verdict(journal(after=[probe("endpoint-resolves", None, False, raised=True)], status="failed"))
    assert not v.ok and "status 'failed'" in v.headline
    f = only(v)
    assert (f.phase, f.activity) == ("after", "endpoint-resolves") and "raised ConfigError" in f.message


def test_an_aborted_run_fails() -> None:
    v = verdict(journal(after=None, status="aborted"))
    assert not v.ok and "aborted" in v.headline and only(v).value == "aborted"


def test_no_journal_is_an_error_not_a_failure() -> None:
    v = verdict(None, chaos_exit=127)
    assert (v.ok, v.status) == (False, "error")
    assert v.headline == "ERROR: no journal from chaos (no such file); chaos exited 127"


@pytest.mark.parametrize("data", [journal(after=[probe("endpoint-resolves", 1, True)]), None])
def test_an_interrupted_run_is_interrupted_with_or_without_a_journal(data: dict[str, Any] | None) -> None:
    v = verdict(data, interrupted=True, chaos_exit=130)
    assert (v.ok, v.status) == (False, "interrupted") and v.headline.startswith("INTERRUPTED")
    assert v.lines[0] == "the run was interrupted (Ctrl-C)"


def test_the_rules_apply_in_order_a_failed_baseline_hides_nothing_later() -> None:
    # A baseline failure and a raising action: the baseline is what to fix first.
    data = journal(before=[probe("p", 0, False)], after=None, method=[action("a", ok=False)])
    assert verdict(data).failures[0].phase == "before"


def test_values_in_messages_are_clipped_but_kept_whole_in_the_failure() -> None:
    big = {"answers": list(range(500))}
    v = verdict(journal(before=[probe("p", big, False, tolerance={"type": "jsonpath"})], after=None))
    f = only(v)
    assert f.value == big and len(f.message) < 300 and " ..." in f.message


def test_exception_text_is_the_last_line_without_wrappers() -> None:
    assert exception_text({"exception": ["chaoslib.exceptions.ActivityFailed: ValueError: a.b: c\n"]}) \
        == "ValueError: a.b: c"
    assert exception_text({"exception": ["x\n", "botocore.exceptions.EndpointConnectionError: no\n"]}) \
        == "EndpointConnectionError: no"
    assert exception_text({"status": "failed"}) == "status 'failed'"


def without_hypothesis(method: list[dict[str, Any]] | None = None, status: str = "completed",
                       rollbacks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A journal of an experiment without a steady-state-hypothesis, as chaoslib writes it."""
    data = journal(after=None, method=method, rollbacks=rollbacks, status=status)
    data["steady_states"] = {"before": None, "after": None, "during": []}
    return data


def test_without_a_hypothesis_a_raised_action_still_fails() -> None:
    # The review's reproduction: action-raises.json without its hypothesis passed verify.
    v = verdict(without_hypothesis(method=[action("empty-the-endpoint", ok=False)]))
    assert (v.ok, v.status) == (False, "failed") and "a method action raised" in v.headline
    assert only(v).phase == "method" and only(v).activity == "empty-the-endpoint"
    assert "steady state: none (the experiment has no steady-state-hypothesis)" in v.lines


def test_without_a_hypothesis_rollbacks_and_the_safety_net_still_judge() -> None:
    v = verdict(without_hypothesis(rollbacks=[action("restore", ok=False)]))
    assert not v.ok and only(v).phase == "rollback"
    v = verdict(without_hypothesis(), safety=Safety(3, True, True, restored=["ep"]))
    assert not v.ok and only(v).phase == "safety"


def test_without_a_hypothesis_an_experiment_that_ran_cleanly_passes_when_it_expects_to_hold() -> None:
    v = verdict(without_hypothesis())
    assert (v.ok, v.status, v.failures) == (True, "passed", [])
    assert v.headline.startswith("RAN: no steady-state hypothesis")


def test_without_a_hypothesis_a_reproduction_cannot_deviate() -> None:
    v = verdict(without_hypothesis(), "deviate")
    assert (v.ok, v.status) == (False, "failed") and "has no steady-state-hypothesis" in v.headline
    assert only(v).phase == "expectation"


def test_a_hypothesis_never_checked_before_the_method_fails_with_a_failure() -> None:
    data = journal(after=None)
    data["experiment"]["steady-state-hypothesis"] = {"title": "h", "probes": [{"name": "p"}]}
    data["steady_states"]["before"] = None  # declared, but chaos wrote no result
    v = verdict(data)
    assert (v.ok, v.status) == (False, "failed") and only(v).phase == "before"
    assert "not checked before the method" in v.headline


def test_a_failed_baseline_whose_probes_all_met_their_tolerance_still_fails() -> None:
    # chaoslib's verdict says "not met" though no probe is marked outside tolerance: the
    # failure list is empty, and that must not read as a pass.
    data = journal(after=None)
    data["steady_states"]["before"]["steady_state_met"] = False
    v = verdict(data)
    assert (v.ok, v.status) == (False, "failed")
    assert only(v).message == v.headline


def test_a_failed_verdict_always_carries_a_failure_and_a_passed_one_never() -> None:
    v = Verdict("failed", "FAILED: something")
    assert (v.ok, [f.message for f in v.failures]) == (False, ["FAILED: something"])
    with pytest.raises(ValueError, match="passing verdict with failures"):
        Verdict("passed", "HELD", failures=[Failure("after", "p", None, 0, "p = 0")])
    with pytest.raises(ValueError, match="not one of"):
        Verdict("ok", "HELD")


def test_chaos_interrupting_the_run_itself_is_a_failure_not_ctrl_c(tmp_path: Path) -> None:
    # A control or safeguard raised InterruptExecution: chaos marks the journal
    # "interrupted" and logs why; chaos-dynamo did not interrupt anything.
    data = without_hypothesis(status="interrupted")
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    path.with_suffix(".log").write_text(
        "\x1b[32m[2026-01-01 10:00:00 INFO] Action: first\n"
        "\x1b[31m[2026-01-01 10:00:01 CRITICAL] [run:552] safeguard: error budget exhausted\n"
        "\x1b[32m[2026-01-01 10:00:01 INFO] Experiment ended with status: interrupted\n")
    v = judge(path, "hold", 1, HEALTHY, interrupted=False)
    assert (v.ok, v.status) == (False, "failed")
    assert v.headline == "FAILED: chaos interrupted the run: safeguard: error budget exhausted"
    assert only(v).message == "chaos interrupted the run: safeguard: error budget exhausted (method)"
    ours = judge(path, "hold", 130, HEALTHY, interrupted=True)
    assert ours.status == "interrupted" and ours.failures == []


def test_chaos_interrupting_without_a_log_says_where_to_look() -> None:
    v = verdict(journal(after=None, status="interrupted"))
    assert v.status == "failed" and "InterruptExecution" in only(v).message and "chaos log" in only(v).message
