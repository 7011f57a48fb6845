"""The report's model from synthetic journals and sidecars: fault windows, chart series in
seconds from the run's start, verdicts, and input that is not a journal."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.report import charts, model
from tests.unit.test_report_data import (
    EP,
    activity,
    failover_report,
    journal,
    lease_report,
    sidecar,
    write,
)


def build(data: dict, side: dict | None = None, tmp_path: Path | None = None) -> model.ExperimentReport:
    path = Path("/nonexistent/run.json") if tmp_path is None else write(tmp_path, "run", data)
    verdict = model.Verdict("passed", "ok", "deviate", None)
    return model.build(path, data, side, verdict=verdict)


def chart(report: model.ExperimentReport, key: str) -> charts.Chart:
    return next(c for c in report.charts if c.key == key)


def test_fault_windows_are_the_method_actions_in_seconds_from_the_start() -> None:
    data = journal(method=[activity("capacity", 1.0, 1.0), activity("look", 1.0, 1.5, kind="probe"),
                           activity("empty", 1.5, 6.25, status="failed")])
    report = build(data)
    assert [(w.index, w.name, w.start, w.end, w.status) for w in report.windows] == [
        (1, "capacity", 1.0, 1.0, "succeeded"), (2, "empty", 1.5, 6.25, "failed")]
    assert report.activities[2].detail == "ActivityFailed: boom"


def test_endpoint_answers_start_from_the_state_at_zero_and_hold_to_the_end() -> None:
    report = build(journal(), sidecar())
    assert report.x_max == pytest.approx(11.0)  # the sidecar's until, past the journal's end
    endpoint = chart(report, f"endpoint:{EP}")
    state, answers = endpoint.series
    assert state.points == ((0.0, 6.0), (3.0, 0.0), pytest.approx((4.4, 6.0)), pytest.approx((11.0, 6.0)))
    assert answers.style == "dots" and answers.points == ((1.0, 1.0), pytest.approx((4.1, 0.0)))
    assert "3 A queries answered NOERROR with no address" == endpoint.summary
    assert all(not c.key.endswith("quiet.example") for c in report.charts)  # not the primary, never changed


def test_generation_chart_marks_a_move_backwards() -> None:
    gen = chart(build(journal(), sidecar()), "generations")
    assert gen.series[0].points == ((0.0, 10.0), (3.0, 5.0), pytest.approx((11.0, 5.0)))
    assert [(m.x, m.bad) for m in gen.markers] == [(3.0, True)]


def test_rates_are_counts_over_the_bucket_width_from_the_sidecar_start() -> None:
    report = build(journal(), sidecar(width=2.0), None)
    lb = chart(report, "rate:lb_requests")
    assert [s.name for s in lb.series] == ["leases"]  # a silent series is not drawn
    assert lb.series[0].points[:2] == ((-1.0, 2.0), (1.0, 2.0))
    dns = chart(report, "rate:dns_queries")
    assert dns.series[0].name == "leases"  # the address is named by the sidecar's services
    assert dns.series[0].points[3] == (5.0, 4.0)
    assert dns.summary.startswith("totals: leases ")


def test_addresses_are_named_from_the_runs_log_when_the_registry_had_none() -> None:
    log = ("[INFO] [control:157] service checkout started: hardened, 1 instance(s), pids [1], "
           "source address 127.0.0.23; warming up 5 s\n")
    data = journal(rollbacks=[activity("start", 0, 1, output={"service": "billing", "source_address": "127.0.0.24"})])
    assert model.services_from_run(data, log) == {"127.0.0.23": "checkout", "127.0.0.24": "billing"}
    assert charts.who("127.0.0.23", {}) == "127.0.0.23 (no service known)"


def test_live_lease_fraction_from_the_lease_report_in_the_rollbacks() -> None:
    data = journal(rollbacks=[activity("report", 9, 10, kind="probe", output=lease_report())])
    leases = chart(build(data), "leases")
    assert leases.series[0].points == ((1.0, 1.0), (3.0, 0.5), (5.0, 0.0), (9.0, 1.0))
    assert [(m.x, m.label) for m in leases.markers] == [(2.0, "trigger start"), (4.0, "trigger end")]
    assert leases.thresholds == ((0.99, "target 0.99"),) and leases.y_max == 1.0
    assert leases.summary == "0.99 live 5.0 s after the trigger's end; no collapse"


def test_capacity_and_a_flap_each_time_a_member_comes_back() -> None:
    data = journal(rollbacks=[activity("report", 9, 10, kind="probe", output=failover_report())])
    capacity = chart(build(data), "capacity")
    assert capacity.series[0].points[0] == (1.0, 1.0) and capacity.series[0].points[-1] == (8.0, 1.0)
    assert [(m.x, m.label) for m in capacity.markers] == [(3.0, "flap: b back in the answer"),
                                                          (7.0, "flap: a back in the answer")]
    assert capacity.summary.startswith("2 flap(s); min capacity 0.50")


def test_without_a_sidecar_every_lab_chart_says_why() -> None:
    report = build(journal())
    assert report.charts == []
    reasons = dict(report.no_data)
    assert reasons["DNS answers per endpoint"] == charts.NO_SIDECAR
    assert reasons["Live-lease fraction"] == "no lease_report output in the journal"
    side = sidecar() | {"missing": ["control/generations"]}
    side["endpoints"][EP].pop("generations")
    assert dict(build(journal(), side).no_data)["Active plan generation"] == \
        "the lab could not answer control/generations"


def test_the_verdict_from_the_journal_alone(tmp_path: Path) -> None:
    reproduced = model.verdict_from_journal(write(tmp_path, "a", journal()), journal())
    assert reproduced.status == "passed" and reproduced.headline.startswith("REPRODUCED")
    first = reproduced.first_failure
    assert first is not None and first.expected and (first.activity, first.value, first.tolerance) == (
        "endpoint-resolves", "0", "range [1, 1000]")
    held = journal(expect="hold")
    deviated = model.verdict_from_journal(write(tmp_path, "b", held), held)
    assert deviated.status == "failed" and deviated.first_failure is not None
    assert not deviated.first_failure.expected and deviated.first_failure.phase == "after"


def test_the_journals_first_failure_is_the_verdicts_own_reading() -> None:
    """Without verify's failures the report names the first failure as the verdict module
    reads it (one extraction, not two that can disagree), in the order chaos ran things."""
    from chaos_dynamo.verify.verdict import journal_failures

    data = journal(method=[activity("empty-the-endpoint", 2.0, 4.0, status="failed")],
                   rollbacks=[activity("restore", 4.2, 4.5, status="failed")])
    first = model.first_failure(data, "hold")
    assert first is not None and (first.phase, first.activity, first.value) == ("method", "empty-the-endpoint",
                                                                                "ActivityFailed: boom")
    assert first.message == journal_failures(data)[0].message == "empty-the-endpoint raised ActivityFailed: boom (method)"
    assert [f.phase for f in journal_failures(data)] == ["method", "after", "rollback"]
    assert model.first_failure(journal(after_met=True), "hold") is None


def test_an_interrupted_journal_is_a_failure_only_when_chaos_logged_why(tmp_path: Path) -> None:
    data = journal()
    data["status"] = "interrupted"
    path = write(tmp_path, "cut", data)
    assert model.verdict_from_journal(path, data).status == "interrupted"  # Ctrl-C, as far as it can tell
    path.with_suffix(".log").write_text("[2026-01-01 10:00:01 CRITICAL] safeguard: error budget exhausted\n")
    v = model.verdict_from_journal(path, data)
    assert (v.status, v.headline) == ("failed", "FAILED: chaos interrupted the run: safeguard: error budget exhausted")


def test_verifys_outcome_wins_over_the_journal() -> None:
    failure = SimpleNamespace(phase="before", activity="p", tolerance={"type": "probe", "provider": {
        "func": "at_most", "arguments": {"limit": 3, "key": "flaps", "value": {}}}}, value={"flaps": 7},
        message="p = 7")
    outcome = SimpleNamespace(status="failed", headline="FAILED: not before", expect="hold", failures=[failure])
    verdict = model.verdict_from_outcome(outcome, journal())  # type: ignore[arg-type]
    assert verdict.status == "failed" and verdict.headline == "FAILED: not before"
    assert verdict.first_failure == model.FirstFailure("before", "p", "at_most(limit=3, key=flaps)", "flaps = 7",
                                                       "p = 7")


@pytest.mark.parametrize(("text", "problem"), [
    ("{not json", "not JSON"),
    ("[1, 2]", "a JSON list"),
    (json.dumps({"title": "x", "method": []}), "is an experiment"),
    (json.dumps({"experiment": {}, "status": "completed"}), "no run"),
])
def test_a_file_that_is_not_a_journal_is_refused_with_the_fix(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "thing.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        model.load_journal(path)
    assert str(path) in str(error.value) and problem in str(error.value)
    assert "chaos" in error.value.fix


def test_a_sidecar_of_another_version_is_ignored_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "run.lab.json"
    path.write_text(json.dumps({"version": 2}))
    assert model.load_sidecar(path) == (None, "lab timeline run.lab.json ignored: version 2, this report reads 1")
    assert model.load_sidecar(tmp_path / "absent.lab.json") == (None, "")


def test_values_are_shown_at_the_key_the_tolerance_checks_and_rounded() -> None:
    tolerance = {"type": "probe", "provider": {"func": "is_false", "arguments": {"key": "collapsed"}}}
    assert model.value_text({"collapsed": True, "reason": "x"}, tolerance) == "collapsed = true"
    assert model.value_text(0.30175137519836426, True) == "0.3018"
    assert model.compact({"at": 1795367660.3210967}) == '{"at": 1795367660.321}'
    assert model.tolerance_text({"type": "range", "range": [1, 1000]}) == "range [1, 1000]"
