"""What the tests of an experiment file read from it and from its journal: the documented
configuration defaults, the steady-state probes run after the method, and a rollback's output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def defaults(experiment: Path) -> dict[str, Any]:
    """The experiment's configuration defaults: the documented settings, used as they are."""
    return {name: entry.get("default") if isinstance(entry, dict) else entry
            for name, entry in json.loads(experiment.read_text())["configuration"].items()}


def after(journal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The steady-state probes run after the method, by name."""
    return {p["activity"]["name"]: p for p in journal["steady_states"]["after"]["probes"]}


def rollback_output(journal: dict[str, Any], name: str) -> dict[str, Any]:
    """The output of the rollback ``name`` (it must have succeeded)."""
    (run,) = [r for r in journal["rollbacks"] if r["activity"]["name"] == name]
    assert run["status"] == "succeeded", run
    return dict(run["output"])
