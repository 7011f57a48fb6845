"""The contract of the ``probes/`` executables: one JSON verdict on stdout, and an exit code.

0: every check passed; 1: a check failed; 2: the probe could not judge (bad arguments, no
lab, an unreadable table), with the error in the verdict.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

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


class VerdictParser(argparse.ArgumentParser):
    """A probe's argument parser whose usage errors are a verdict too: one JSON line
    ``{"probe", "ok": false, "error": "usage: ..."}`` on stdout, the usage on stderr, exit 2.

    Args:
        probe: the verdict's ``probe`` (``"failover"``); the rest as ``ArgumentParser``.
    """

    def __init__(self, probe: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.probe = probe

    def add_lab_options(self) -> None:
        """``--state FILE | --api URL``: which lab to read (see :func:`lab_configuration`)."""
        where = self.add_mutually_exclusive_group()
        where.add_argument("--state", help="the lab's state file (default: $CHAOS_DYNAMO_STATE)")
        where.add_argument("--api", help="the lab's API URL (default: $CHAOS_DYNAMO_API)")

    def error(self, message: str) -> NoReturn:
        print(json.dumps({"probe": self.probe, "ok": False, "error": f"usage: {message}"}))
        self.print_usage(sys.stderr)
        raise SystemExit(2)


def lab_configuration(args: argparse.Namespace) -> dict[str, Any]:
    """The Chaos Toolkit configuration naming the lab of ``--state`` / ``--api`` (empty: the
    environment's)."""
    configuration: dict[str, Any] = {}
    if args.state:
        configuration["chaos_dynamo_state"] = args.state
    if args.api:
        configuration["chaos_dynamo_api"] = args.api
    return configuration
