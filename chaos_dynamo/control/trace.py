"""Trace files: one interleaving of control-plane steps, written by the explorer and
replayed on the lab by ``chaos-dynamo replay``.

::

    {
      "format": "chaos-dynamo-trace/1",
      "design": "naive", "enactors": 3, "plans": 4, "endpoints": 1, "keep": 1, "seed": 0,
      "steps": [{"actor": "planner", "action": "plan"}, {"actor": "enactor-a", "action": "check"}, ...],
      "violation": {"kind": "empty-endpoint", "endpoint": "dynamodb.us-east-1.amazonaws.com.", "detail": "..."},
      "history": [{"actor": ..., "action": ..., "outcome": ..., "generation": ...}, ...],
      "digest": "16 hex digits of the history"
    }

Actors are ``planner`` and ``enactor-a``, ``enactor-b``...; actions are ``plan``, ``check``,
``commit`` and ``cleanup``. The world at the start is plan 1 applied to the first
``endpoints`` endpoints of the lab; the planner writes plans 2..``plans``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaos_dynamo.control.enactor import Design
from chaos_dynamo.errors import ConfigError

FORMAT = "chaos-dynamo-trace/1"
ACTIONS = ("plan", "check", "commit", "cleanup")


def enactor_names(count: int) -> list[str]:
    """``enactor-a``, ``enactor-b``, ... (one per AZ in us-east-1: three)."""
    if not 1 <= count <= 26:
        raise ConfigError("enactors", f"{count!r} is out of range", "use 1 to 26")
    return [f"enactor-{chr(ord('a') + i)}" for i in range(count)]


@dataclass(frozen=True)
class Step:
    actor: str
    action: str


@dataclass(frozen=True)
class Trace:
    design: str
    enactors: int
    plans: int
    endpoints: int
    keep: int
    steps: tuple[Step, ...]
    seed: int = 0
    violation: dict[str, Any] | None = None
    history: tuple[dict[str, Any], ...] = ()
    digest: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["steps"] = [asdict(s) for s in self.steps]
        data["history"] = list(self.history)
        extra = data.pop("extra")
        return json.dumps({"format": FORMAT, **data, **extra}, indent=2, sort_keys=True)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.to_json() + "\n", encoding="utf-8")
        return p


def load_trace(path: str | Path) -> Trace:
    """Read and validate a trace file; ConfigError naming the field otherwise."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("TRACE", f"{p} does not exist", "give a file written by `chaos-dynamo explore`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("TRACE", f"{p} is not JSON ({exc})", "give a file written by `chaos-dynamo explore`") from None
    except OSError as exc:
        raise ConfigError("TRACE", f"{p} cannot be read ({exc})", "give a readable trace file") from None
    return trace_from_dict(data)


def trace_from_dict(data: Any) -> Trace:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError("format", f"is not {FORMAT!r}", "give a file written by `chaos-dynamo explore`")
    try:
        design = Design(data["design"]).value
    except (KeyError, ValueError):
        raise ConfigError("design", f"{data.get('design')!r} is not a design", "use naive or fenced") from None
    numbers = {}
    for key, low, high in (("enactors", 1, 26), ("plans", 2, 10_000), ("endpoints", 1, 16), ("keep", 0, 10_000)):
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(key, f"{value!r} is out of range", f"use a whole number from {low} to {high}")
        numbers[key] = value
    actors = {"planner", *enactor_names(numbers["enactors"])}
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list):
        raise ConfigError("steps", f"{raw_steps!r} is not a list of steps", "give [{\"actor\": ..., \"action\": ...}]")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("seed", f"{seed!r} is not a seed", "use a whole number >= 0")
    violation = data.get("violation")
    if violation is not None and not isinstance(violation, dict):
        raise ConfigError("violation", f"{violation!r} is not an object", "use {\"kind\": ..., \"endpoint\": ...} or null")
    history = data.get("history") or []
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise ConfigError("history", "is not a list of step records", "use the history `chaos-dynamo explore` wrote, or []")
    steps = []
    for i, step in enumerate(raw_steps):
        if not isinstance(step, dict) or step.get("actor") not in actors or step.get("action") not in ACTIONS:
            raise ConfigError(f"steps[{i}]", f"{step!r} is not a step of this trace's actors",
                              f"actors are {sorted(actors)}, actions {list(ACTIONS)}")
        steps.append(Step(step["actor"], step["action"]))
    if not steps:
        raise ConfigError("steps", "is empty", "a trace needs at least one step")
    known = {"format", "design", "enactors", "plans", "endpoints", "keep", "steps", "seed", "violation",
             "history", "digest"}
    return Trace(design=design, steps=tuple(steps), seed=seed,
                 violation=violation, history=tuple(history),
                 digest=str(data.get("digest", "")), extra={k: v for k, v in data.items() if k not in known},
                 **numbers)
