"""The contract of the ``probes/`` executables: one JSON verdict on stdout, and an exit code.

0: every check passed; 1: a check failed; 2: the probe could not judge (bad arguments, no
lab, an unreadable table), with the error in the verdict.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from chaos_dynamo.errors import ChaosDynamoError


def check(name: str, value: Any, op: str, limit: Any, reason: str = "") -> dict[str, Any]:
    """One judged check of a verdict: ``value op limit`` (``<=``, ``>=`` or ``==``); a value
    that could not be measured fails, with ``reason``."""
    if value is None:
        return {"name": name, "value": None, "op": op, "limit": limit, "ok": False,
                "reason": reason or "not measured"}
    ok = {"<=": value <= limit, ">=": value >= limit, "==": value == limit}[op]
    return {"name": name, "value": value, "op": op, "limit": limit, "ok": bool(ok)}


def print_verdict(probe: str, judge: Callable[[], Mapping[str, Any]],
                  subject: Mapping[str, Any] | None = None) -> int:
    """Print ``judge()``'s verdict (which has an ``ok`` key) and return the exit code; an
    error chaos-dynamo raised on purpose becomes ``{"probe", "ok": false, **subject, "error"}``."""
    try:
        verdict = judge()
    except ChaosDynamoError as exc:
        print(json.dumps({"probe": probe, "ok": False, **(subject or {}),
                          "error": f"{type(exc).__name__}: {exc}"}))
        return 2
    print(json.dumps(verdict, default=str))
    return 0 if verdict["ok"] else 1
