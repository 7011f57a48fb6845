"""Chaos Toolkit actions that rehearse failover trouble on the lab's load balancers.

``roll_out_targets`` replaces targets one after another, each coming up before its network
state has propagated (its new connections refused or blackholed for a while), as the new
instances in us-east-1 did; ``fail_intermittently`` makes targets fail a seeded fraction
of new connections; ``degrade_az`` makes every LB of one availability zone slow or down
together; ``restore_targets`` is the rollback. Health checks open a new connection per
check, so they see all of it.

Every argument is checked before anything changes, and every action acts only on a lab at
a loopback address. The waiting actions restore what they changed however they end
(Ctrl-C, an error).
"""

# No `from __future__ import annotations`: Chaos Toolkit discovery reads the real types.
from typing import Any

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.control._client import JsonDict
from chaos_dynamo.endpoint import _lab
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.failover import faults
from chaos_dynamo.lab.lab import require_loopback_url
from chaos_dynamo.lab.state import LabInfo

__all__ = ["roll_out_targets", "fail_intermittently", "degrade_az", "restore_targets"]

_clock: Clock = REAL_CLOCK
"""What the waiting actions read and sleep on; tests replace it (``monkeypatch``)."""


def roll_out_targets(targets: str = "", stagger: float = 2.0, gap: float = 1.0,
                     propagation: float = 10.0, failure_rate: float = 1.0, mode: str = "refuse",
                     seed: int = 0, *, configuration: dict[str, Any] | None = None,
                     secrets: dict[str, Any] | None = None) -> JsonDict:
    """Replace targets one after another; each comes up before its network state propagated.

    For each target in order, ``stagger`` seconds apart: it goes down for ``gap`` seconds
    (no listener: connections refused), then listens again while, for ``propagation``
    seconds, a fraction ``failure_rate`` of its new connections (health checks included)
    is refused (reset at once) or blackholed (never answered); then it is clean. Blocks
    until the last target is clean. Interrupted (Ctrl-C, an error), every target it
    touched is put back up and clean before the error goes on.

    Args:
        targets: comma-separated LB names, in rollout order; empty means every LB.
        stagger: seconds between two targets' starts, 0..3600.
        gap: seconds each target is down, 0..3600.
        propagation: seconds each target fails new connections once up, 0..3600.
        failure_rate: fraction (0-1) of new connections that fail meanwhile; 1.0 fails all.
        mode: ``refuse`` or ``blackhole``.
        seed: seeds which connections fail (with each LB's name), so a run replays.

    Returns:
        ``{"targets": [names], "events": [{"time", "lb", "event"}], "seconds",
        "started_at", "stagger", "gap", "propagation", "failure_rate", "mode", "seed"}``;
        events are ``down``, ``up`` (failing) and ``clean``, in the order made, timed in
        seconds since the epoch once the lab applied them.
    """
    stagger = faults.check_seconds("stagger", stagger)
    gap = faults.check_seconds("gap", gap)
    propagation = faults.check_seconds("propagation", propagation)
    failure_rate = faults.check_rate("failure_rate", failure_rate)
    mode = faults.check_mode("mode", mode)
    seed = faults.check_seed("seed", seed)
    info, api_url = _lab_api(configuration)
    names = faults.select_targets(targets, info.load_balancers)
    steps = faults.rollout_steps(names, stagger, gap, propagation, failure_rate, mode, seed)
    clock = _clock
    started, started_at = clock.monotonic(), clock.now()
    events: list[dict[str, Any]] = []
    touched: list[str] = []
    try:
        for step in steps:
            clock.sleep(max(0.0, started + step.offset - clock.monotonic()))
            if step.lb not in touched:
                touched.append(step.lb)
            _post_faults(api_url, step.lb, dict(step.body), configuration)
            events.append({"time": clock.now(), "lb": step.lb, "event": step.event})
    except BaseException:
        _restore(api_url, dict.fromkeys(touched, faults.RESTORE), "rollout interrupted", configuration)
        raise
    seconds = clock.monotonic() - started
    _lab.logger.info("rolled out %s in %.1f s (%s %.0f%% for %.1f s each)", names, seconds, mode,
                     failure_rate * 100, propagation)
    return {"targets": names, "events": events, "seconds": seconds, "started_at": started_at,
            "stagger": stagger, "gap": gap, "propagation": propagation,
            "failure_rate": failure_rate, "mode": mode, "seed": seed}


def fail_intermittently(targets: str, rate: float, mode: str = "refuse", seconds: float = 0.0,
                        seed: int = 0, *, configuration: dict[str, Any] | None = None,
                        secrets: dict[str, Any] | None = None) -> JsonDict:
    """Make targets fail a seeded fraction of their new connections; returns at once.

    Open keep-alive connections keep working; each new one (health checks included) fails
    with probability ``rate``. Undo with ``restore_targets`` (or ``reset_lb_faults``).

    Args:
        targets: comma-separated LB names; empty means every LB.
        rate: fraction (0-1) of new connections that fail.
        mode: ``refuse`` (reset at once) or ``blackhole`` (held open, never answered).
        seconds: how long, 0..3600; 0 means until restored.
        seed: seeds which connections fail (with each LB's name), so a run replays.

    Returns:
        ``{lb name: that LB's knobs after the change}``.
    """
    rate = faults.check_rate("rate", rate)
    mode = faults.check_mode("mode", mode)
    seconds = faults.check_seconds("seconds", seconds)
    seed = faults.check_seed("seed", seed)
    info, api_url = _lab_api(configuration)
    names = faults.select_targets(targets, info.load_balancers)
    knob = {"rate": rate, "mode": mode, "seconds": seconds or None, "seed": seed}
    return {name: _post_faults(api_url, name, {"intermittent": knob}, configuration) for name in names}


def degrade_az(az: str, latency: float = 0.0, down: bool = False, seconds: float = 0.0, *,
               configuration: dict[str, Any] | None = None,
               secrets: dict[str, Any] | None = None) -> JsonDict:
    """Make every LB of one availability zone slow, or down, together.

    With ``seconds`` above 0 it holds the fault that long, then puts each LB's latency and
    down state back as they were, even if interrupted (Ctrl-C, an error); with 0 it
    leaves the fault on and returns (undo with ``restore_targets``).

    Args:
        az: the availability zone, e.g. ``use1-az1`` (``lab status`` lists each LB's).
        latency: seconds added before each request is forwarded, 0..600.
        down: refuse connections (and close the open ones).
        seconds: how long to hold the fault, 0..3600; 0 means leave it on.

    Returns:
        ``{"az", "lbs": [names], "latency", "down", "seconds", "degraded_at",
        "restored_at" (null when left on), "during": {lb: knobs}, "after": {lb: knobs} or
        null}``; times in seconds since the epoch.
    """
    latency = faults.check_seconds("latency", latency, maximum=faults.MAX_LATENCY)
    down = faults.check_bool("down", down)
    seconds = faults.check_seconds("seconds", seconds)
    if latency == 0 and not down:
        raise ConfigError("latency", "0 with down false degrades nothing",
                          "pass latency above 0 (seconds per request) and/or down: true")
    info, api_url = _lab_api(configuration)
    names = faults.lbs_of_az(az, info.load_balancers)
    before = {name: _post_faults(api_url, name, {}, configuration) for name in names}  # {} reads the knobs
    body: dict[str, Any] = {"latency": latency} if latency > 0 else {}
    if down:
        body["down"] = True
    clock = _clock
    touched: list[str] = []
    try:
        during: dict[str, Any] = {}
        for name in names:
            touched.append(name)
            during[name] = _post_faults(api_url, name, body, configuration)
        degraded_at, degraded = clock.now(), clock.monotonic()  # now() for reports only
        if seconds > 0:  # timed on the monotonic clock: a wall-clock step must not stretch it
            clock.sleep(max(0.0, degraded + seconds - clock.monotonic()))
    except BaseException:
        _restore(api_url, _bodies_before(touched, before, body), f"AZ {az} degradation interrupted",
                 configuration)
        raise
    after = (_restore(api_url, _bodies_before(names, before, body), f"AZ {az} degradation over", configuration)
             if seconds > 0 else None)
    restored_at = clock.now() if seconds > 0 else None
    _lab.logger.info("AZ %s (%s): latency %.3f s, down %s, %s", az, names, latency, down,
                     f"restored after {seconds:g} s" if seconds > 0 else "left on")
    return {"az": az, "lbs": names, "latency": latency, "down": down, "seconds": seconds,
            "degraded_at": degraded_at, "restored_at": restored_at, "during": during,
            "after": after}


def restore_targets(targets: str = "", *, configuration: dict[str, Any] | None = None,
                    secrets: dict[str, Any] | None = None) -> JsonDict:
    """Put targets back: up, no latency, every new connection served (a rollback).

    Clears what the failover actions set (down, latency, intermittent); injected errors
    and health answers are ``reset_lb_faults``'s.

    Args:
        targets: comma-separated LB names; empty means every LB.

    Returns:
        ``{lb name: that LB's knobs after the change}``.
    """
    info, api_url = _lab_api(configuration)
    names = faults.select_targets(targets, info.load_balancers)
    body = {**faults.RESTORE, "latency": 0.0}
    return {name: _post_faults(api_url, name, body, configuration) for name in names}


def _lab_api(configuration: dict[str, Any] | None) -> tuple[LabInfo, str]:
    """The lab (refused unless every address is loopback) and its control API URL."""
    info = _lab.lab_info(configuration)
    return info, require_loopback_url("chaos_dynamo_api", info.api_url)


def _post_faults(api_url: str, lb: str, body: dict[str, Any], configuration: dict[str, Any] | None) -> JsonDict:
    result: dict[str, Any] = _lab.http_json(f"{api_url}/_chaos_dynamo/lb/{lb}/faults", body,
                                            configuration=configuration)  # a dry run's too
    return result


def _restore(api_url: str, bodies: dict[str, dict[str, Any]], why: str,
             configuration: dict[str, Any] | None) -> dict[str, Any]:
    """POST each LB its body; a failure is logged and the others still restored, so an
    interrupted action restores all it can before its own error goes on."""
    restored: dict[str, Any] = {}
    for name, body in bodies.items():
        try:
            restored[name] = _post_faults(api_url, name, body, configuration)
        except Exception as error:  # noqa: BLE001 - restore the others
            _lab.logger.warning("%s: could not restore %s: %s", why, name, error)
    if restored:
        _lab.logger.info("%s: restored %s", why, sorted(restored))
    return restored


def _bodies_before(names: list[str], before: dict[str, Any],
                   applied: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per LB, the faults body that puts the knobs in ``applied`` back as ``before`` had them.

    A down that was only a ``refuse_for`` window comes back up: re-setting it down would
    never end.
    """
    bodies: dict[str, dict[str, Any]] = {}
    for name in names:
        knobs, body = before[name], {}
        if "latency" in applied:
            body["latency"] = knobs["latency"]
        if "down" in applied:
            body["down"] = bool(knobs["down"]) and knobs["refusing_for"] is None
        bodies[name] = body
    return bodies
