"""The lab's control-plane API, under ``/_chaos_dynamo/control/``.

Every input is checked here, before anything changes; a bad one raises
:class:`~chaos_dynamo.errors.ConfigError` naming the field (the front answers HTTP 400), and
a request that conflicts with what runs raises LabError (HTTP 409).

=======  ==========================  =================================================================
method   route                       body / answer
=======  ==========================  =================================================================
GET      status                      mode, design, stuck, went_backwards, enactors, failpoints, digest
GET      history?since=T             the history (every step, with times)
GET      enactors                    each Enactor's state
GET      summary                     the history in a few lines (generations, refusals, cleanups)
GET      generations?since=T         every change of an endpoint's active generation (from, to, backwards)
POST     start                       ``{plan_interval, poll, design}``: run free
POST     stop                        stop and join every actor (failpoints stay armed)
POST     design                      ``{design, keep}``
POST     failpoints                  ``{point, action, actors, event, seconds, count, probability}``
POST     failpoints/disarm           ``{point}`` (absent: all)
POST     burst                       ``{count}``: the Planner writes plans now
POST     stall                       ``{enactor, point, until}``: pause an Enactor until an event
POST     slow                        ``{enactor, seconds, point}``: delay an Enactor's steps
POST     race                        ``{design, seed, lock_losses, keep, timeout}``: the race scenario
POST     replay                      ``{trace, timeout}``: replay an explorer trace
POST     reset                       ``{design, keep}``: plan 1 everywhere, empty history
POST     restore                     ``{timeout}``: operator restore of every endpoint, unstick
=======  ==========================  =================================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from chaos_dynamo.control.enactor import Design
from chaos_dynamo.control.failpoints import ACTIONS, POINTS
from chaos_dynamo.control.history import PLANNER
from chaos_dynamo.control.runtime import ControlPlane
from chaos_dynamo.control.trace import trace_from_dict
from chaos_dynamo.errors import ConfigError

ROUTES = [
    "GET /_chaos_dynamo/control/status", "GET /_chaos_dynamo/control/history?since=T",
    "GET /_chaos_dynamo/control/enactors", "GET /_chaos_dynamo/control/summary",
    "GET /_chaos_dynamo/control/generations?since=T", "POST /_chaos_dynamo/control/start",
    "POST /_chaos_dynamo/control/stop", "POST /_chaos_dynamo/control/design",
    "POST /_chaos_dynamo/control/failpoints", "POST /_chaos_dynamo/control/failpoints/disarm",
    "POST /_chaos_dynamo/control/burst", "POST /_chaos_dynamo/control/stall",
    "POST /_chaos_dynamo/control/slow", "POST /_chaos_dynamo/control/race",
    "POST /_chaos_dynamo/control/replay", "POST /_chaos_dynamo/control/reset",
    "POST /_chaos_dynamo/control/restore",
]
ENACTOR_POINTS = tuple(p for p in POINTS if p.startswith("enactor."))


def handle(plane: ControlPlane, method: str, parts: list[str], query: dict[str, list[str]],
           body: Any) -> tuple[int, Any]:
    """Answer one control-plane request: (HTTP status, JSON body)."""
    route = "/".join(parts)
    if method == "GET":
        if route == "status":
            return 200, plane.status()
        if route == "history":
            return 200, [e.as_dict() for e in plane.history.entries(since=parse_since(query))]
        if route == "enactors":
            return 200, plane.enactor_states()
        if route == "summary":
            return 200, plane.summary()
        if route == "generations":
            return 200, plane.generation_changes(since=parse_since(query))
    elif method == "POST" and route in _POST:
        if body is not None and not isinstance(body, dict):
            raise ConfigError("body", f"{body!r} is not a JSON object", "send {\"key\": value, ...} or nothing")
        return 200, _POST[route](plane, body or {})
    return 404, {"error": f"{method} /_chaos_dynamo/control/{route} is not a control route", "routes": ROUTES}


# --- POST handlers: check everything, then act ------------------------------------------------

def _start(plane: ControlPlane, body: Mapping[str, Any]) -> Any:
    _known("start", body, {"plan_interval", "poll", "design"})
    interval = _number("plan_interval", body["plan_interval"], 0, 3600) if "plan_interval" in body else None
    poll = _number("poll", body["poll"], 0.01, 60, low_open=False) if "poll" in body else None
    design = _design(body["design"]) if body.get("design") else None
    return plane.start(interval, poll, design)


def _stop(plane: ControlPlane, body: Mapping[str, Any]) -> Any:
    _known("stop", body, set())
    return plane.stop()


def _set_design(plane: ControlPlane, body: Mapping[str, Any]) -> Any:
    _known("design", body, {"design", "keep"})
    design = _design(body.get("design"))
    keep = _int("keep", body["keep"], 0, 10_000) if "keep" in body else None
    return plane.set_design(design, keep)


def _arm(plane: ControlPlane, body: Mapping[str, Any]) -> Any:
    _known("failpoint", body, {"point", "action", "actors", "event", "seconds", "count", "probability"})
    actors = _actors(plane, body.get("actors", []))
    event = _text("failpoint.event", body.get("event", ""))
    seconds = _number("failpoint.seconds", body.get("seconds", 0.0), 0, 3600)
    count = _int("failpoint.count", body.get("count", 1), 1, 1_000_000)
    probability = _number("failpoint.probability", body.get("probability", 0.0), 0, 1)
    armed = plane.failpoints.arm(_text("failpoint.point", body.get("point", "")),
                                 _text("failpoint.action", body.get("action", "")), actors=actors,
                                 event=event, seconds=seconds, count=count, probability=probability)
    return {"armed": armed.describe(), "failpoints": plane.failpoints.describe()}


def _disarm(plane: ControlPlane, body: Mapping[str, Any]) -> Any:
    _known("disarm", body, {"point"})
    point = body.get("point") or None
    if point is not None and point not in POINTS:
        raise ConfigError("point", f"{point!r} is not a failpoint", f"use one of {list(POINTS)}, or omit it for all")
    plane.failpoints.disarm(point)
    return {"failpoints": plane.failpoints.describe()}


def _burst(plane: ControlPlane, body: Mapping[str, Any]) -> Any:
    _known("burst", body, {"count"})
    return plane.burst(_int("count", body.get("count", 1), 1, 1000))


def _stall(plane: ControlPlane, body: Mapping[str, Any]) -> Any:
    _known("stall", body, {"enactor", "point", "until"})
    enactor = _enactor(plane, body.get("enactor"))
    point = _point(body.get("point", "enactor.commit"))
    until = _text("until", body.get("until", "operator.release")) or "operator.release"
    armed = plane.failpoints.arm(point, "pause", actors=[enactor], event=until)
    return {"armed": armed.describe(), "failpoints": plane.failpoints.describe()}


def _slow(plane: ControlPlane, body: Mapping[str, Any]) -> Any:
    _known("slow", body, {"enactor", "seconds", "point"})
    enactor = _enactor(plane, body.get("enactor"))
    seconds = _number("seconds", body.get("seconds"), 0, 3600)
    point = _point(body.get("point", "enactor.commit"))
    armed = plane.failpoints.arm(point, "delay", actors=[enactor], seconds=seconds)
    return {"armed": armed.describe(), "failpoints": plane.failpoints.describe()}


def _race(plane: ControlPlane, body: Mapping[str, Any]) -> Any:
    _known("race", body, {"design", "seed", "lock_losses", "keep", "timeout"})
    design = _design(body.get("design", "naive"))
    seed = _int("seed", body.get("seed", 0), 0, 2**32 - 1)
    lock_losses = _int("lock_losses", body.get("lock_losses", 2), 0, 40)
    keep = _int("keep", body.get("keep", 2), 0, 8)
    timeout = _number("timeout", body.get("timeout", 60.0), 1, 600)
    return plane.run_race(design, seed, lock_losses, keep, timeout)


def _replay(plane: ControlPlane, body: Mapping[str, Any]) -> Any:
    _known("replay", body, {"trace", "timeout"})
    trace = trace_from_dict(body.get("trace"))
    timeout = _number("timeout", body.get("timeout", 60.0), 1, 600)
    return plane.replay(trace, timeout)


def _reset(plane: ControlPlane, body: Mapping[str, Any]) -> Any:
    _known("reset", body, {"design", "keep"})
    design = _design(body["design"]) if "design" in body else None
    keep = _int("keep", body["keep"], 0, 10_000) if "keep" in body else None
    return plane.reset(design, keep, len(plane.all_endpoints))


def _restore(plane: ControlPlane, body: Mapping[str, Any]) -> Any:
    _known("restore", body, {"timeout"})
    return plane.restore(_number("timeout", body.get("timeout", 30.0), 1, 600))


_POST = {
    "start": _start, "stop": _stop, "design": _set_design, "failpoints": _arm, "failpoints/disarm": _disarm,
    "burst": _burst, "stall": _stall, "slow": _slow, "race": _race, "replay": _replay, "reset": _reset,
    "restore": _restore,
}


# --- checks ------------------------------------------------------------------------------------

def _known(what: str, body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ConfigError(unknown[0], f"is not an option of {what}",
                          f"use {sorted(allowed)}" if allowed else f"{what} takes no options")


def _design(value: Any) -> Design:
    try:
        return Design(value)
    except ValueError:
        raise ConfigError("design", f"{value!r} is not a design", "use \"naive\" (as in us-east-1) or \"fenced\" "
                          "(the fix)") from None


def _number(field: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high or (low_open and value == low):
        raise ConfigError(field, f"{value!r} is not a number from {low} to {high}", f"use {low} to {high}")
    return float(value)


def _int(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(field, f"{value!r} is not a whole number from {low} to {high}",
                          f"use {low} to {high}")
    return value


def _text(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(field, f"{value!r} is not a string", "give it in quotes")
    return value


def _enactor(plane: ControlPlane, value: Any) -> str:
    if value not in plane.names:
        raise ConfigError("enactor", f"{value!r} is not an Enactor of the lab", f"use one of {plane.names}")
    return str(value)


def _point(value: Any) -> str:
    if value not in ENACTOR_POINTS:
        raise ConfigError("point", f"{value!r} is not an Enactor failpoint", f"use one of {list(ENACTOR_POINTS)}")
    return str(value)


def _actors(plane: ControlPlane, value: Any) -> list[str]:
    items = [a for a in value.split(",") if a.strip()] if isinstance(value, str) else value
    known = [PLANNER, *plane.names]
    if not isinstance(items, list) or any(a.strip() not in known if isinstance(a, str) else True for a in items):
        raise ConfigError("failpoint.actors", f"{value!r} is not a list of actors", f"use names from {known} "
                          "(empty: every actor)")
    return [a.strip() for a in items]


def parse_since(query: Mapping[str, list[str]]) -> float | None:
    """The ``?since=T`` of a log or history route: seconds since the epoch, or None when absent
    (the lab's own routes use it too).

    Raises:
        ConfigError: ``since`` is not a finite number.
    """
    if "since" not in query:
        return None
    text = query["since"][0]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError("since", f"{text!r} is not a time", "give seconds since the epoch, e.g. ?since=1700000000.5")
    return value


__all__ = ["handle", "parse_since", "ROUTES", "ACTIONS"]
