"""Trace files: malformed ones are refused by field before any lab is touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.control.trace import Step, Trace, load_trace, trace_from_dict
from chaos_dynamo.errors import ConfigError

BASE: dict[str, Any] = {"format": "chaos-dynamo-trace/1", "design": "naive", "enactors": 3, "plans": 4,
                        "endpoints": 1, "keep": 1, "steps": [{"actor": "planner", "action": "plan"}]}


@pytest.mark.parametrize(("change", "field"), [
    ({"format": "other"}, "format"),
    ({"design": "clever"}, "design"),
    ({"enactors": 0}, "enactors"),
    ({"plans": "4"}, "plans"),
    ({"seed": "x"}, "seed"),
    ({"seed": None}, "seed"),
    ({"violation": 3}, "violation"),
    ({"history": [1, 2]}, "history"),
    ({"steps": "x"}, "steps"),
    ({"steps": []}, "steps"),
    ({"steps": [{"actor": "enactor-z", "action": "check"}]}, "steps[0]"),
    ({"steps": [{"actor": "planner", "action": "dance"}]}, "steps[0]"),
])
def test_bad_traces_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        trace_from_dict(BASE | change)
    assert info.value.field == field


def test_round_trip(tmp_path: Path) -> None:
    trace = Trace("fenced", 2, 4, 1, 1, (Step("planner", "plan"), Step("enactor-b", "check")), seed=3)
    assert load_trace(trace.save(tmp_path / "t.json")) == trace


def test_unreadable_files(tmp_path: Path) -> None:
    binary = tmp_path / "b.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    for path in (tmp_path / "missing.json", binary, tmp_path):
        with pytest.raises(ConfigError) as info:
            load_trace(path)
        assert info.value.field == "TRACE"
