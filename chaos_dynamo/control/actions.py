"""Chaos Toolkit actions on the lab's DNS control plane (Planner and three Enactors).

The control plane runs inside the lab (:mod:`chaos_dynamo.control.runtime`); these actions
drive it through the lab's control API. ``run_race_scenario`` reproduces the October 2025
race between two Enactors by failpoints, so it happens on every run; ``restore_and_unstick``
is the operator's fix, for an experiment's rollbacks.

Every action acts only on a lab at a loopback address (``_lab.lab_info`` checks it), and
every argument is checked by the lab before anything changes: a bad one fails the activity
with a ConfigError naming it.
"""

from typing import Any

from chaos_dynamo.control import _client
from chaos_dynamo.control._client import JsonDict
from chaos_dynamo.endpoint._lab import logger

__all__ = [
    "start_control_plane", "stop_control_plane", "set_design", "arm_failpoint", "disarm_failpoints",
    "burst_planner", "stall_enactor", "slow_enactor", "run_race_scenario", "reset_control_plane",
    "restore_and_unstick",
]

def start_control_plane(plan_interval: float = 5.0, poll: float = 0.5, design: str = "", *,
                        configuration: dict[str, Any] | None = None,
                        secrets: dict[str, Any] | None = None) -> JsonDict:
    """Run the Planner and Enactors free: a plan every ``plan_interval`` s, Enactors apply it.

    Args:
        plan_interval: seconds between plans (0: only on ``burst_planner``).
        poll: seconds between an Enactor's looks at the plan store.
        design: "naive" (as in us-east-1) or "fenced" (the fix); empty keeps the current one.

    Returns:
        The control plane's status.
    """
    body: dict[str, Any] = {"plan_interval": plan_interval, "poll": poll}
    if design:
        body["design"] = design
    result: JsonDict = _client.call("start", body, configuration=configuration)
    return result


def stop_control_plane(*, configuration: dict[str, Any] | None = None,
                       secrets: dict[str, Any] | None = None) -> JsonDict:
    """Stop every Planner and Enactor thread and wait for them (paused ones are released; armed
    failpoints stay armed: ``disarm_failpoints``). A running race or replay is aborted.

    Safe as a rollback: stopping an idle control plane does nothing.
    """
    result: JsonDict = _client.call("stop", {}, configuration=configuration, timeout=90.0)
    return result


def set_design(design: str = "fenced", keep: int = 2, *, configuration: dict[str, Any] | None = None,
               secrets: dict[str, Any] | None = None) -> JsonDict:
    """Switch the Enactors' design.

    Args:
        design: "naive": one freshness check, cleanup by age (the us-east-1 race is possible);
            "fenced": the batch deletes the exact generation marker it checked, and cleanup
            never deletes an active or held plan.
        keep: cleanup deletes plans more than ``keep`` generations older than the one applied.
    """
    result: JsonDict = _client.call("design", {"design": design, "keep": keep}, configuration=configuration)
    return result


def arm_failpoint(point: str, action: str, actors: str = "", event: str = "", seconds: float = 0.0,
                  count: int = 1, probability: float = 0.0, *,
                  configuration: dict[str, Any] | None = None,
                  secrets: dict[str, Any] | None = None) -> JsonDict:
    """Arm a failpoint of the control plane.

    Args:
        point: enactor.check, enactor.after_check, enactor.commit, enactor.cleanup or planner.plan.
        action: "pause" (until ``event``), "delay" (``seconds``), "fail" (the next ``count``
            times; at enactor.commit that is a lost lock), "random" (``probability``) or
            "crash" (the actor's thread dies of an unexpected error, the next ``count`` times).
        actors: comma-separated actor names (planner, enactor-a, ...); empty: every actor.
        event: what a pause waits for, e.g. "enactor-b.applied".
    """
    body = {"point": point, "action": action, "actors": actors, "event": event, "seconds": seconds,
            "count": count, "probability": probability}
    result: JsonDict = _client.call("failpoints", body, configuration=configuration)
    return result


def disarm_failpoints(point: str = "", *, configuration: dict[str, Any] | None = None,
                      secrets: dict[str, Any] | None = None) -> JsonDict:
    """Disarm one failpoint, or every one (``point`` empty); paused actors carry on."""
    result: JsonDict = _client.call("failpoints/disarm", {"point": point} if point else {},
                                    configuration=configuration)
    return result


def burst_planner(count: int = 1, *, configuration: dict[str, Any] | None = None,
                  secrets: dict[str, Any] | None = None) -> JsonDict:
    """Have the running Planner write ``count`` plans now (1 to 1000)."""
    result: JsonDict = _client.call("burst", {"count": count}, configuration=configuration)
    return result


def stall_enactor(enactor: str, point: str = "enactor.commit", until: str = "operator.release", *,
                  configuration: dict[str, Any] | None = None,
                  secrets: dict[str, Any] | None = None) -> JsonDict:
    """Pause an Enactor at ``point`` until the event ``until`` (or ``disarm_failpoints``).

    Args:
        enactor: enactor-a, enactor-b or enactor-c.
        point: enactor.check, enactor.after_check, enactor.commit or enactor.cleanup.
        until: the event that releases it, e.g. "enactor-b.applied".
    """
    result: JsonDict = _client.call("stall", {"enactor": enactor, "point": point, "until": until},
                                    configuration=configuration)
    return result


def slow_enactor(enactor: str, seconds: float, point: str = "enactor.commit", *,
                 configuration: dict[str, Any] | None = None,
                 secrets: dict[str, Any] | None = None) -> JsonDict:
    """Delay every step of an Enactor at ``point`` by ``seconds`` (a slow AZ)."""
    result: JsonDict = _client.call("slow", {"enactor": enactor, "seconds": seconds, "point": point},
                                    configuration=configuration)
    return result


def run_race_scenario(design: str = "naive", seed: int = 0, lock_losses: int = 2, keep: int = 2,
                      timeout: float = 60.0, *, configuration: dict[str, Any] | None = None,
                      secrets: dict[str, Any] | None = None) -> JsonDict:
    """Reproduce the October 2025 race between DNS Enactors, by failpoints, on every endpoint.

    Enactor A checks plan 5 and is held back (paused, then ``lock_losses`` lost locks) while
    Enactor B applies plan 10 and then cleans up; A applies plan 5 over 10. Naive: plan 5 is
    active when B's cleanup deletes it, so the endpoint answers NOERROR with no addresses, and
    Enactor C cannot apply plan 11 (stuck). Fenced: Route 53 refuses A's stale batch.

    Args:
        design: "naive" or "fenced".
        seed: seeds the actors' backoff jitter; one seed gives one history (same digest).
        lock_losses: lost locks Enactor A suffers before its stale commit (0 to 40).
        keep: cleanup deletes plans more than ``keep`` generations older (0 to 8; the race
            needs plan 5 < 10 - keep).
        timeout: seconds the scenario may take.

    Returns:
        ``{"race_reproduced", "held", "went_backwards", "empty_endpoints", "stuck", "enactors",
        "design", "seed", "digest", "steps", "duration", "violations", "stuck_reason"}``; the
        history itself: ``race_history``.
    """
    timeout = _client.check_timeout(timeout)
    body = {"design": design, "seed": seed, "lock_losses": lock_losses, "keep": keep, "timeout": timeout}
    result: JsonDict = _client.call("race", body, configuration=configuration, timeout=timeout + 30)
    for line in result.get("summary", []):
        logger.info("race (%s): %s", design, line)
    return {
        "race_reproduced": result.get("race_reproduced"), "held": result.get("held"),
        "went_backwards": [f"{c['endpoint']}: {c['from']} -> {c['to']} ({c['actor']})"
                           for c in result.get("went_backwards", [])],
        "empty_endpoints": result.get("empty_endpoints"), "stuck": result.get("stuck"),
        "enactors": result.get("enactors"),
        **{k: result.get(k) for k in ("design", "seed", "digest", "steps", "duration")},
        "violations": sorted({f"{v['kind']} {v.get('endpoint', '')}".strip() for v in result.get("violations", [])}),
        "stuck_reason": result.get("stuck_reason"),
    }


def reset_control_plane(design: str = "naive", keep: int = 2, *,
                        configuration: dict[str, Any] | None = None,
                        secrets: dict[str, Any] | None = None) -> JsonDict:
    """A clean baseline: actors stopped, failpoints disarmed, plan 1 on every endpoint, the
    history emptied (so a generation decrease is counted from here).

    Returns:
        ``{"design", "keep", "endpoints", "generations"}``.
    """
    status = _client.call("reset", {"design": design, "keep": keep}, configuration=configuration, timeout=90.0)
    return {k: status[k] for k in ("design", "keep", "endpoints", "generations")}


def restore_and_unstick(timeout: float = 30.0, *, configuration: dict[str, Any] | None = None,
                        secrets: dict[str, Any] | None = None) -> JsonDict:
    """The operator's fix, for rollbacks: abort any running scenario, write the newest plan
    back to every endpoint (as ``restore_endpoint`` does: UPSERTs of its tree, aliases, lock
    and marker), wait until the lab DNS answers from it, and clear the stuck state so the
    Enactors can apply later plans again. Idempotent.

    Returns:
        ``{"generation", "endpoints", "was_stuck", "stuck_reason"}``.
    """
    timeout = _client.check_timeout(timeout)
    result: JsonDict = _client.call("restore", {"timeout": timeout}, configuration=configuration,
                                    timeout=timeout + 60)
    logger.info("restored %s to plan %s%s", result.get("endpoints"), result.get("generation"),
                " and cleared the stuck state" if result.get("was_stuck") else "")
    return result
