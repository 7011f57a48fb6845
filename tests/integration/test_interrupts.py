"""SIGINT or SIGTERM at seeded random points of every experiment: the lab is restored each time.

Each run starts ``chaos-dynamo run EXPERIMENT`` on the session's lab (through a state file of
this module's own, so every process the run starts carries it in its environment and can be
found), waits for an anchor line of chaos's log (chaos about to start, the experiment
started, the method started, the rollbacks started), waits a seeded random delay and sends
the signal. The phase the signal hit is read from chaos's log at that moment. Then:

* ``chaos-dynamo run`` exits 130, or it had finished before the signal (counted, and said);
* every endpoint answers (DNS addresses and a DynamoDB round trip) and its alias is on the
  newest plan of the plan table;
* no load-balancer fault is set, DynamoDB's capacity is unlimited;
* the control plane is idle, not busy, not stuck, with no failpoint armed;
* the run's process group is gone and no process carries this module's state file (chaos,
  the services the run started, a process activity's command);
* no listening socket on 127.x appeared that belongs to anything the run started.

The plan (which experiment, which signal, which anchor, which delay) comes from one seeded
RNG: the seed and every run are printed; ``CHAOS_DYNAMO_SIGNAL_SEED=N`` replays a plan.
The service experiments run with shorter warm-ups and outages (their documented
``CHAOS_DYNAMO_*`` settings) so that their method is reached within the time budget.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chaos_dynamo.clock import wait_until
from chaos_dynamo.control import _client
from chaos_dynamo.control.probes import active_generation
from chaos_dynamo.endpoint import probes
from chaos_dynamo.endpoint._lab import http_json
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo, write_state
from chaos_dynamo.planstore import PlanStore
from chaos_dynamo.processes import all_processes, group_members, listening_sockets
from chaos_dynamo.route53.backend import make_client
from tests.conftest import BIN, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

SEED = int(os.environ.get("CHAOS_DYNAMO_SIGNAL_SEED", "20251019"))
EXPERIMENTS = ROOT / "experiments"

# Anchor: the chaos log line after which the seeded delay starts, and the longest delay.
ANCHORS = {
    "start": ("$ ", 0.6),  # chaos-dynamo is about to start chaos: chaos's own start-up
    "before-method": ("Running experiment:", 0.4),  # controls (services warming up), steady state
    "method": ("Playing your experiment's method now", 0.4),  # inside the fault
    "rollbacks": ("Let's rollback", 0.1),
}
# The phase a log line puts the run in (the last one seen when the signal goes out).
PHASES = [("Running experiment:", "before-method"), ("Playing your experiment's method now", "method"),
          ("Let's rollback", "rollbacks"), ("Experiment ended with status", "after-chaos")]

# (experiment, runs, anchors it may get): the cheap ones more often and in every phase.
SHAPE = [
    ("endpoint-empty-smoke", 3, ("start", "before-method", "method", "rollbacks")),
    ("dns-stale-plan-race", 2, ("before-method", "method", "rollbacks")),
    ("dns-stale-plan-fenced", 1, ("start", "method", "rollbacks")),
    ("empty-endpoint-retry", 1, ("before-method", "method")),
    ("lease-mass-expiry", 1, ("before-method", "method")),
    ("failover-flap", 1, ("before-method", "method")),
]
# Shorter warm-ups and outages, so the service experiments reach their method in seconds.
FAST = {"CHAOS_DYNAMO_SERVICE_WARMUP": "2.5", "CHAOS_DYNAMO_OUTAGE_SECONDS": "3", "CHAOS_DYNAMO_BASELINE_SECONDS": "2",
        "CHAOS_DYNAMO_RECOVERY_SECONDS": "2", "CHAOS_DYNAMO_MAX_SECONDS_TO_HEALTHY": "10",
        "CHAOS_DYNAMO_ROLLOUT_STAGGER": "0.5", "CHAOS_DYNAMO_ROLLOUT_GAP": "0.3",
        "CHAOS_DYNAMO_PROPAGATION_SECONDS": "2", "CHAOS_DYNAMO_SETTLE_SECONDS": "10", "PYTHONUNBUFFERED": "1"}


@dataclass(frozen=True)
class Planned:
    index: int
    experiment: str
    signal: str
    anchor: str
    delay: float

    @property
    def id(self) -> str:
        return f"{self.index:02d}-{self.experiment}-{self.signal}-{self.anchor}-{self.delay:.2f}s"


def plan(seed: int) -> list[Planned]:
    rng = random.Random(seed)
    runs = [(name, rng.choice(["SIGINT", "SIGTERM"]), anchor)
            for name, count, anchors in SHAPE for anchor in [rng.choice(anchors) for _ in range(count)]]
    rng.shuffle(runs)
    return [Planned(i, name, sig, anchor, round(rng.uniform(0.0, ANCHORS[anchor][1]), 3))
            for i, (name, sig, anchor) in enumerate(runs)]


PLAN = plan(SEED)
print(f"signal test: seed {SEED} (CHAOS_DYNAMO_SIGNAL_SEED={SEED} replays it); runs: "
      + ", ".join(f"({p.experiment}, {p.signal}, {p.anchor} +{p.delay:.2f} s)" for p in PLAN))


@dataclass
class Tally:
    """What the runs hit, for the summary at the end of the module."""

    lines: list[str] = field(default_factory=list)
    finished_first: int = 0
    clean: bool = False
    """Whether the last run left the lab clean (then the next one need not check it again)."""


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    tally = Tally()
    yield tally
    print(f"\nsignal test, seed {SEED}: {len(tally.lines)} run(s), {tally.finished_first} finished before "
          "the signal:\n  " + "\n  ".join(tally.lines))


@pytest.fixture(scope="module")
def state(lab: Lab, lab_info: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A state file of this module's own for the session's lab, clean to start with."""
    path = tmp_path_factory.mktemp("interrupts") / "lab.json"
    write_state(lab_info, path)
    assert lab.control_plane is not None
    lab.control_plane.reset()
    yield path
    from chaos_dynamo.services import supervisor

    supervisor.stop_all(path)
    lab.control_plane.reset()  # plan 1 everywhere, as the rest of the suite expects


def problems(info: LabInfo) -> list[str]:
    """What is not as a run must leave the lab (empty: all restored)."""
    config = {"chaos_dynamo_api": info.api_url}
    found = []
    newest = PlanStore(make_client("dynamodb", info.api_url, info.region), info.plan_table).newest()
    assert newest is not None
    for ep in info.endpoints:
        qtype = "AAAA" if ep.ipv6 else "A"
        if not any(probes.endpoint_addresses(ep.name, qtype, configuration=config) > 0
                   and probes.dynamodb_roundtrip(ep.name, configuration=config) for _ in range(3)):
            found.append(f"{ep.name} does not answer")
        generation = active_generation(ep.name, configuration=config)
        if generation != newest.generation:
            found.append(f"{ep.name} is on plan {generation}, not the newest {newest.generation}")
    status = http_json(f"{info.api_url}/_chaos_dynamo/status")
    for name, lb in status["load_balancers"].items():
        faults = lb["faults"]
        if faults["down"] or faults["latency"] or faults["unhealthy"] or faults["error_rate"] \
                or faults["intermittent"] or faults["refusing_for"]:
            found.append(f"{name} faults set: {faults}")
    capacity = status["dynamodb"]["capacity"]
    if capacity["slots"] is not None or capacity["service_time"]:
        found.append(f"DynamoDB capacity not unlimited: {capacity}")
    control = _client.call("status", configuration=config)
    if control["mode"] != "idle" or control["busy_with"] or control["stuck"] or control["failpoints"]:
        found.append(f"control plane: mode {control['mode']}, busy {control['busy_with']!r}, stuck "
                     f"{control['stuck_reason']!r}, failpoints {control['failpoints']}")
    return found


def ours(state: Path, run_pid: int) -> list[str]:
    """Processes the run started that still run: its group, or anything carrying the state file."""
    left = [p for p in all_processes() if p.pid != os.getpid() and (
        p.pgid == run_pid or p.sid == run_pid or p.environ.get("CHAOS_DYNAMO_STATE") == str(state)
        or p.environ.get("CHAOS_DYNAMO_RUN_PARENT") == str(run_pid))]
    return [f"pid {p.pid}: {p.command[:120]}" for p in left] + [
        f"pid {p.pid} still in the run's group" for p in group_members(run_pid)]


def loopback_listeners() -> dict[tuple[str, int], int]:
    """(address, port) -> inode of every listening 127.x socket, whoever holds it."""
    from chaos_dynamo.processes import _sockets

    return {(s.address, s.port): s.inode for s in _sockets().values() if s.loopback}


@pytest.mark.parametrize("run", PLAN, ids=[p.id for p in PLAN])
def test_a_signal_at_a_seeded_point_leaves_the_lab_restored(run: Planned, state: Path, lab_info: LabInfo,
                                                            tally: Tally, tmp_path: Path) -> None:
    before = [] if tally.clean else problems(lab_info)
    assert not before, f"the lab was not clean before the run: {before}"
    tally.clean = False
    listeners = loopback_listeners()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_"))}
    env |= FAST | {"CHAOS_DYNAMO_STATE": str(state)}
    process = subprocess.Popen(
        [str(BIN / "chaos-dynamo"), "run", str(EXPERIMENTS / f"{run.experiment}.json"), "--state-file", str(state),
         "--journal", str(tmp_path / "journal.json")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            lines.append(raw.decode(errors="replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    marker, _ = ANCHORS[run.anchor]
    try:
        anchored = wait_until(lambda: any(marker in line for line in lines) or process.poll() is not None,
                              timeout=120, interval=0.005)
        assert anchored, f"seed {SEED}, {run}: no {marker!r} line in 120 s:\n{''.join(lines)[-3000:]}"
        time.sleep(run.delay)  # the seeded point itself (not a synchronisation)
        sent = process.poll() is None
        phase = next((p for m, p in reversed(PHASES) if any(m in line for line in lines)), "start")
        if sent:
            if run.signal == "SIGINT":
                os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the foreground group
            else:
                os.kill(process.pid, signal.SIGTERM)
        code = process.wait(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    reader.join(timeout=10)
    output = "".join(lines)
    journal = json.loads((tmp_path / "journal.json").read_text()) if (tmp_path / "journal.json").exists() else {}
    what = (f"seed {SEED}, run {run.id}: signal {'sent' if sent else 'NOT sent (the run had finished)'} in phase "
            f"{phase}, chaos status {journal.get('status', 'no journal')!r}, exit {code}")
    tally.lines.append(what)
    tally.finished_first += not sent
    print(what)
    if sent:
        assert code == 130, f"{what}\n{output[-4000:]}"
    left = problems(lab_info)
    assert not left, f"{what}: the lab was left with {left}\n{output[-4000:]}"
    tally.clean = True
    alive = ours(state, process.pid)
    assert not alive, f"{what}: processes the run started still run: {alive}\n{output[-4000:]}"
    new = {inode: key for key, inode in loopback_listeners().items() if listeners.get(key) != inode}
    if new:  # other suites on this machine open sockets too: only the run's would be a leak
        run_pids = {p.pid for p in all_processes() if p.sid == process.pid or p.pgid == process.pid
                    or p.environ.get("CHAOS_DYNAMO_STATE") == str(state)} - {os.getpid()}
        leaked = [f"{sock} (pid {pid})" for pid, socks in listening_sockets(run_pids).items() for sock in socks
                  if sock.inode in new]
        assert not leaked, f"{what}: sockets left listening by the run: {leaked}"


# --- the safety net's parts that no experiment of this repository needs, shown one by one ----------

def test_after_an_interrupted_run_the_safety_net_stops_the_control_plane_and_restores_the_newest_plan(
        state: Path, lab_info: LabInfo) -> None:
    """An experiment that started the control plane and armed a failpoint, interrupted before
    its rollbacks: the Enactors are held at their commit while the Planner writes plans, so
    every endpoint is behind the newest plan when the run ends."""
    from chaos_dynamo.control import actions as control
    from chaos_dynamo.runner import ensure_restored

    config = {"chaos_dynamo_api": lab_info.api_url}
    store = PlanStore(make_client("dynamodb", lab_info.api_url, lab_info.region), lab_info.plan_table)
    start = store.newest()
    assert start is not None
    control.arm_failpoint("enactor.commit", "pause", event="never.happens", configuration=config)
    control.start_control_plane(plan_interval=0.05, poll=0.05, configuration=config)

    def planned_ahead() -> bool:  # two plans no Enactor could apply
        newest = store.newest()
        return newest is not None and newest.generation >= start.generation + 2

    assert wait_until(planned_ahead, timeout=60, interval=0.05)
    safety = ensure_restored(lab_info, interrupted=True)
    assert safety.restored_by_runner and safety.roundtrip, safety
    assert any("control plane" in r for r in safety.restored) and any("newest plan" in r for r in safety.restored)
    assert problems(lab_info) == []


FAKE_CHAOS = """
import os, pathlib, subprocess, sys
pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))
subprocess.Popen(["sleep", "60"])  # a process activity's command, left behind in chaos's group
"""


def test_what_chaos_leaves_in_its_process_group_is_stopped(tmp_path: Path) -> None:
    from chaos_dynamo.runner import Interrupt, run_chaos

    pid_file = tmp_path / "chaos.pid"
    assert run_chaos([sys.executable, "-c", FAKE_CHAOS, str(pid_file)], dict(os.environ), Interrupt()) == (0, False)
    assert not group_members(int(pid_file.read_text())), "the `sleep 60` that chaos left behind still runs"
