"""The CI verdict on synthetic journals: what `chaos run`'s exit code alone gets wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.runner import Safety, expectation, judge

HEALTHY = Safety(3, True, False)


def probe(name: str, output: Any, met: bool) -> dict[str, Any]:
    return {"activity": {"name": name, "type": "probe", "tolerance": True}, "output": output,
            "status": "succeeded", "tolerance_met": met}


def journal(*, before: bool = True, after: bool | None = False, action_status: str = "succeeded",
            rollback_status: str = "succeeded", status: str = "completed", actions: int = 1) -> dict[str, Any]:
    data: dict[str, Any] = {
        "experiment": {"title": "t"}, "status": status, "deviated": after is False,
        "steady_states": {"before": {"steady_state_met": before, "probes": [probe("p", 1, before)]}},
        "run": [{"activity": {"name": f"a{i}", "type": "action"}, "status": action_status, "output": None}
                for i in range(actions)],
        "rollbacks": [{"activity": {"name": "r", "type": "action"}, "status": rollback_status}],
    }
    if after is not None:
        data["steady_states"]["after"] = {"steady_state_met": after, "probes": [probe("p", 0, after)]}
    return data


def verdict(tmp_path: Path, data: dict[str, Any] | None, expect: str, safety: Safety = HEALTHY,
            interrupted: bool = False) -> tuple[bool, str]:
    path = tmp_path / "journal.json"
    if data is not None:
        path.write_text(json.dumps(data))
    result = judge(path, expect, 1, safety, interrupted)
    return result.ok, result.headline


@pytest.mark.parametrize(
    ("data", "expect", "ok", "headline"),
    [
        (journal(after=False), "deviate", True, "REPRODUCED"),
        (journal(after=True), "deviate", False, "NOT REPRODUCED"),
        (journal(before=False, after=None), "deviate", False, "did not hold before"),
        (journal(before=False, after=None), "hold", False, "did not hold before"),
        (journal(action_status="failed"), "deviate", False, "action raised"),
        (journal(action_status="failed", after=True), "hold", False, "action raised"),
        (journal(rollback_status="failed"), "deviate", False, "rollback did not restore"),
        (journal(after=True), "hold", True, "HELD"),
        (journal(after=False), "hold", False, "DEVIATED"),
        (journal(after=None, status="interrupted"), "hold", False, "chaos interrupted the run"),
        (journal(after=None, status="aborted"), "hold", False, "aborted"),
        (journal(after=None), "hold", False, "not checked after"),
        (journal(after=False, actions=0), "deviate", False, "no action"),
    ],
)
def test_verdicts(tmp_path: Path, data: dict[str, Any], expect: str, ok: bool, headline: str) -> None:
    got_ok, got_headline = verdict(tmp_path, data, expect)
    assert (got_ok, headline in got_headline) == (ok, True), got_headline


def test_no_journal_is_a_failure(tmp_path: Path) -> None:
    ok, headline = verdict(tmp_path, None, "deviate")
    assert not ok and "no journal" in headline


def test_service_restored_only_by_the_safety_net_is_a_failure(tmp_path: Path) -> None:
    ok, headline = verdict(tmp_path, journal(), "deviate", Safety(3, True, True, restored=["x"]))
    assert not ok and "rollback did not restore" in headline


def test_interrupted_run_never_passes(tmp_path: Path) -> None:
    ok, headline = verdict(tmp_path, journal(after=True), "hold", interrupted=True)
    assert not ok and "INTERRUPTED" in headline


def test_expectation_is_read_from_the_extensions() -> None:
    assert expectation({"method": []}) == "hold"
    assert expectation({"extensions": [{"name": "chaos-dynamo", "expect": "deviate"}]}) == "deviate"
    with pytest.raises(ConfigError) as info:
        expectation({"extensions": [{"name": "chaos-dynamo", "expect": "explode"}]})
    assert "expect" in info.value.field


def test_a_reproduction_must_deviate_on_the_probe_it_names(tmp_path: Path) -> None:
    data = journal(after=False)
    data["experiment"]["extensions"] = [{"name": "chaos-dynamo", "expect": "deviate", "deviates": ["p"]}]
    ok, headline = verdict(tmp_path, data, "deviate")
    assert ok and "deviated on p" in headline
    data["experiment"]["extensions"][0]["deviates"] = ["endpoint-resolves"]
    ok, headline = verdict(tmp_path, data, "deviate")
    assert not ok and "NOT REPRODUCED" in headline and "not on ['endpoint-resolves']" in headline


def test_a_bad_deviates_list_names_the_field() -> None:
    from chaos_dynamo.runner import must_deviate_on

    with pytest.raises(ConfigError) as info:
        must_deviate_on({"extensions": [{"name": "chaos-dynamo", "deviates": "endpoint-resolves"}]})
    assert info.value.field == "extensions[chaos-dynamo].deviates"
