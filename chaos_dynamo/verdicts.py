"""The contract of the ``probes/`` executables: one JSON verdict on stdout, and an exit code.

0: every check passed; 1: a check failed; 2: the probe could not judge (bad arguments, no
lab, an unreadable table), with the error in the verdict.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from chaos_dynamo.errors import ChaosDynamoError


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
