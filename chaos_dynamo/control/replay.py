"""``chaos-dynamo replay TRACE``: an explorer's interleaving, step by step, on a real lab.

The trace (:mod:`chaos_dynamo.control.trace`) is sent to the lab's control plane, whose
threads take the trace's steps in its order through boto3 and the lab's Route 53 rules
(:func:`chaos_dynamo.control.scenarios.replay`). This module prints the lab-side history
and whether the trace's violation happened on the lab too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from chaos_dynamo.control.trace import load_trace

REPLAY_TIMEOUT = 300.0


def replay_trace(path: Path, state_file: str | None = None, restore: bool = True) -> int:
    """Replay the trace at ``path`` on the running lab (or one started for it); 0 when the
    trace's violation (or, for a trace without one, its clean run) was reproduced."""
    from chaos_dynamo.control import _client
    from chaos_dynamo.runner import lab_for_run

    trace = load_trace(path)  # ConfigError naming the field, before any lab starts
    click.echo(f"replaying {path}: {trace.design} design, {trace.enactors} Enactor(s), plans 1..{trace.plans}, "
               f"{trace.endpoints} endpoint(s), keep {trace.keep}, {len(trace.steps)} steps")
    if trace.violation:
        click.echo(f"the trace's violation: {trace.violation.get('kind')} at {trace.violation.get('endpoint', '?')}")
    data = {"trace": {"format": "chaos-dynamo-trace/1", "design": trace.design, "enactors": trace.enactors,
                      "plans": trace.plans, "endpoints": trace.endpoints, "keep": trace.keep, "seed": trace.seed,
                      "steps": [{"actor": s.actor, "action": s.action} for s in trace.steps],
                      "violation": trace.violation, "digest": trace.digest, "history": list(trace.history)},
            "timeout": REPLAY_TIMEOUT}
    with lab_for_run(state_file, None) as (info, _started):
        lab = {"chaos_dynamo_api": info.api_url}  # a 400 comes back as the ConfigError naming the field
        restored: dict[str, Any] | None = None
        try:
            result: dict[str, Any] = _client.call("replay", data, configuration=lab, timeout=REPLAY_TIMEOUT + 30)
        finally:
            # Whatever the replay did or however it failed, the lab is put back.
            if restore:
                restored = _client.call("restore", {}, configuration=lab, timeout=120)
    click.echo("")
    click.echo(f"lab-side history ({len(result['history'])} steps, digest {result['digest']}):")
    for number, entry in enumerate(result["history"], 1):
        click.echo("  " + _line(number, entry))
        for v in result["violations"]:
            if v["step"] == number - 1:
                click.echo(f"      ^ {v['kind']} {v.get('endpoint', '')}: {v['detail']}")
    if result["diverged"]:
        click.echo(f"the replay diverged at step {result['diverged']['step'] + 1}: {result['diverged']['detail']}")
    if result["same_outcomes"] is not None:
        click.echo(f"same steps and outcomes as the trace's history: {'yes' if result['same_outcomes'] else 'NO'}")
    kinds = sorted({v["kind"] for v in result["violations"]})
    click.echo(f"violations on the lab: {', '.join(kinds) if kinds else 'none'}")
    if restored is not None:
        click.echo(f"afterwards the lab was restored to plan {restored['generation']} (operator restore)")
    expected = (trace.violation or {}).get("kind")
    if result["reproduced"]:
        what = f"the trace's {expected} violation happened on the lab" if expected else \
            "the trace ran on the lab without a violation, as explored"
        click.secho(f"verdict: REPRODUCED: {what}", fg="green", bold=True)
        return 0
    what = (f"the lab did not show the trace's {expected} violation" if expected
            else "the lab showed a violation the trace does not have")
    click.secho(f"verdict: NOT REPRODUCED: {what}", fg="red", bold=True)
    return 1


def _line(number: int, entry: dict[str, Any]) -> str:
    plan = f" plan {entry['generation']}" if entry.get("generation") is not None else ""
    where = f" on {entry['endpoint']}" if entry.get("endpoint") else ""
    detail = entry.get("error") or entry.get("detail") or ""
    return f"{number:>3}. {entry['actor']} {entry['action']}{plan}{where} ... {entry['outcome']}" + \
        (f" ({detail})" if detail else "")
