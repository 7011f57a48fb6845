"""Two experiments side by side on one lab, each in its own namespace, with no cross-talk.

One lab (module-scoped) with namespaces team-a and team-b, three load balancers each. One
real ``chaos-dynamo verify --jobs 2`` runs ``namespace-a-outage.json`` and
``namespace-b-steady.json`` on it as one batch: A sends 5 requests through its endpoint,
throttles all its load balancers, empties its endpoint and holds the fault until B is done
and the test has read the lab's state; B waits for A's fault, then asks its own endpoint,
sends 9 requests through it and counts them. They coordinate through marker files, so B's
method runs inside A's fault on every run, however loaded the machine.

Without the namespace filter, each experiment's count would be 14 (5 + 9):
:func:`test_each_experiment_counts_only_its_own_requests` shows that number from the same
log, so the exact counts are what the scoping makes them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.clock import REAL_CLOCK, wait_until
from chaos_dynamo.config import load_topology
from chaos_dynamo.dns.client import query
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo, write_state
from chaos_dynamo.plans import Plan, PlanEntry
from chaos_dynamo.planstore import PlanStore
from chaos_dynamo.retry.probes import HttpLab, dns_query_count, lb_request_count
from chaos_dynamo.route53.backend import make_client
from chaos_dynamo.services.attribution import app_id
from tests.conftest import BIN, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

SAMPLES = ROOT / "tests" / "data" / "experiments"
A, B = "team-a", "team-b"
DRIVEN = {A: 5, B: 9}
"""The 'drive' requests each experiment sends through its own endpoint."""


@dataclass
class Parallel:
    """What the verify run left, and what the lab looked like while A's fault was on."""

    work: Path
    since: float
    code: int
    output: str
    during: dict[str, Any]  # lab.status() while A held its fault

    def journal(self, stem: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.work / "journals" / f"{stem}.json").read_text())
        return data

    def run_output(self, stem: str, name: str) -> Any:
        for entry in self.journal(stem)["run"]:
            if entry["activity"]["name"] == name:
                assert entry["status"] == "succeeded", entry
                return entry["output"]
        raise AssertionError(f"{stem} has no activity {name!r}")


@pytest.fixture(scope="module")
def ns_lab() -> Iterator[Lab]:
    lab = Lab(load_topology(None, seed=5, namespaces=f"{A},{B}", propagation_delay=0.05, resync_interval=0.0))
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def info(ns_lab: Lab) -> LabInfo:
    return ns_lab.info()


@pytest.fixture(scope="module")
def state(info: LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ns-state") / "lab.json"
    write_state(info, path)
    return path


def in_ns(info: LabInfo, name: str) -> dict[str, Any]:
    return {"chaos_dynamo_api": info.api_url, "chaos_dynamo_namespace": name}


@pytest.fixture(scope="module")
def parallel(ns_lab: Lab, state: Path, tmp_path_factory: pytest.TempPathFactory) -> Parallel:
    work = tmp_path_factory.mktemp("ns-verify")
    sync = work / "sync"
    sync.mkdir()
    since = REAL_CLOCK.now()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CHAOS_DYNAMO_", "GITHUB_"))}
    env |= {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "CHAOS_DYNAMO_TEST_SYNC": str(sync),
            "CHAOS_DYNAMO_TEST_SINCE": repr(since)}
    command = [str(BIN / "chaos-dynamo"), "verify", str(SAMPLES / "namespace-a-outage.json"),
               str(SAMPLES / "namespace-b-steady.json"), "--jobs", "2", "--state-file", str(state),
               "--junit", "junit.xml"]
    process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        faulted = wait_until(lambda: (sync / "a-faulted").exists() or process.poll() is not None,
                             timeout=180, interval=0.05)
        during = ns_lab.status() if faulted and process.poll() is None else {}
        (sync / "a-fault-seen").touch()  # A holds its fault until this (and B's end)
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return Parallel(work, since, process.returncode, output, during)


def test_the_two_namespaces_run_as_one_batch_and_both_pass(parallel: Parallel) -> None:
    assert parallel.code == 0, parallel.output
    assert parallel.output.count("started (shared lab, batch of 2)") == 2, parallel.output
    cases = {c.get("name", "").split(":")[0]: c for c in ET.parse(parallel.work / "junit.xml").iter("testcase")}
    assert set(cases) == {"namespace-a-outage", "namespace-b-steady"}
    assert all(case.find("failure") is None and case.find("error") is None for case in cases.values())
    a = parallel.journal("namespace-a-outage")
    assert a["steady_states"]["after"]["steady_state_met"] is False, "A's fault must break A's hypothesis"
    # The markers ended the waits, not their timeouts: the two really ran interleaved.
    assert parallel.run_output("namespace-a-outage", "hold-until-team-b-is-done-and-the-fault-seen")["status"] == 0
    assert parallel.run_output("namespace-b-steady", "wait-for-team-a-fault")["status"] == 0
    b = parallel.journal("namespace-b-steady")
    assert b["steady_states"]["before"]["steady_state_met"] is True
    assert b["steady_states"]["after"]["steady_state_met"] is True


def test_b_answers_throughout_while_a_is_empty(parallel: Parallel, ns_lab: Lab, info: LabInfo) -> None:
    assert parallel.code == 0, parallel.output
    a_name, b_name = (info.scoped(n).primary_endpoint.name for n in (A, B))
    a_line = ns_lab.availability(a_name)
    b_line = ns_lab.availability(b_name)
    assert [e["addresses"] for e in b_line] == [3], f"B's endpoint changed: {b_line}"
    emptied = [e["time"] for e in a_line if e["addresses"] == 0 and e["time"] >= parallel.since]
    restored = [e["time"] for e in a_line if e["addresses"] > 0 and emptied and e["time"] > emptied[0]]
    assert emptied and restored, f"A's endpoint was not emptied and restored: {a_line}"
    # B's method ran inside A's fault, and its endpoint answered there.
    b_addresses = {lb["address"] for lb in info.scoped(B).load_balancers}
    for probe in ("own-endpoint-during-the-fault", "own-endpoint-after-driving"):
        answer = parallel.run_output("namespace-b-steady", probe)
        assert answer["name"] == b_name and answer["count"] >= 1, answer
        assert set(answer["addresses"]) <= b_addresses, answer
    starts = [_epoch(e["start"]) for e in parallel.journal("namespace-b-steady")["run"]
              if e["activity"]["name"] == "own-endpoint-during-the-fault"]
    assert emptied[0] <= starts[0] <= restored[0]


def test_a_fault_on_a_load_balancers_leaves_b_and_the_lab_untouched(parallel: Parallel, info: LabInfo) -> None:
    assert parallel.during, f"A's fault was never seen on: {parallel.output}"
    faults = {name: lb["faults"] for name, lb in parallel.during["load_balancers"].items()}
    a_lbs = {lb["name"] for lb in info.scoped(A).load_balancers}
    assert a_lbs == {f"{A}-lb-1", f"{A}-lb-2", f"{A}-lb-3"}
    assert all(faults[name]["error_rate"] == 1.0 for name in a_lbs), faults
    untouched = {name: knobs for name, knobs in faults.items() if name not in a_lbs}
    assert untouched and all(not knobs["error_rate"] and not knobs["down"] for knobs in untouched.values()), faults
    # B's 9 requests went through while A's LBs refused everything: none was throttled.
    lbs = parallel.during["counters"]["lb"]
    assert sum(lbs[f"{B}-lb-{i}"].get("by_status", {}).get("400", 0) for i in (1, 2, 3)) == 0, lbs


def test_each_experiment_counts_only_its_own_requests(parallel: Parallel, info: LabInfo) -> None:
    assert parallel.code == 0, parallel.output
    for stem, n in (("namespace-a-outage", DRIVEN[A]), ("namespace-b-steady", DRIVEN[B])):
        assert parallel.run_output(stem, f"drive-{n}-requests")["status"] == 0
    assert parallel.run_output("namespace-a-outage", "own-drive-requests") == DRIVEN[A]
    assert parallel.run_output("namespace-b-steady", "own-drive-requests") == DRIVEN[B]
    for name, driven in DRIVEN.items():
        assert lb_request_count("drive", parallel.since, configuration=in_ns(info, name)) == driven
    # The same log, unfiltered (a view that knows no namespaces): what each experiment would
    # have counted without the scoping. Every request went through its own namespace's LBs.
    unscoped = HttpLab(dataclasses.replace(info, namespaces=()))
    drives = [r for r in unscoped.lb_log(parallel.since) if app_id(r.user_agent) == "drive"]
    assert len(drives) == sum(DRIVEN.values())
    for name, driven in DRIVEN.items():
        assert sum(1 for r in drives if r.lb.startswith(f"{name}-lb-")) == driven
    # The lab's own endpoints saw none of it.
    assert lb_request_count("drive", parallel.since, configuration={"chaos_dynamo_api": info.api_url}) == 0


def test_dns_query_counts_are_per_namespace(ns_lab: Lab, info: LabInfo) -> None:
    since = REAL_CLOCK.now()
    asked = {A: 4, B: 6}
    for name, times in asked.items():
        endpoint = info.scoped(name).primary_endpoint.name
        for _ in range(times):  # over TCP, no retry: each query reaches the lab DNS, and its log, once
            assert query(info.dns, endpoint, "A", timeout=30.0, tcp=True, retries=0).addresses
    for name, times in asked.items():
        assert dns_query_count("", since, configuration=in_ns(info, name)) == times
    other = info.scoped(B).primary_endpoint.name
    with pytest.raises(ConfigError, match=rf"endpoint: '{other}' is not an endpoint"):
        dns_query_count(other, since, configuration=in_ns(info, A))


def test_an_lb_of_another_namespace_is_refused_and_nothing_changes(ns_lab: Lab, info: LabInfo) -> None:
    from chaos_dynamo.lbfleet.actions import set_dynamodb_capacity, set_lb_faults

    before = {name: lb["faults"] for name, lb in ns_lab.status()["load_balancers"].items()}
    with pytest.raises(ConfigError, match=rf"lb: '{B}-lb-1' is not a load balancer of namespace '{A}' "
                                          rf"\(it belongs to namespace '{B}'\)"):
        set_lb_faults(f"{B}-lb-1", down=True, configuration=in_ns(info, A))
    with pytest.raises(ConfigError, match="lb: 'lb-1' is not a load balancer of namespace"):
        set_lb_faults("lb-1", latency=1.0, configuration=in_ns(info, A))
    with pytest.raises(ConfigError, match="chaos_dynamo_namespace: set_dynamodb_capacity changes DynamoDB's"):
        set_dynamodb_capacity(slots=1, configuration=in_ns(info, A))
    with pytest.raises(ConfigError, match=r"chaos_dynamo_namespace: 'team-c' is not a namespace of the lab; "
                                          r"use one of \['team-a', 'team-b'\]"):
        set_lb_faults(f"{A}-lb-1", down=True, configuration=in_ns(info, "team-c"))
    after = {name: lb["faults"] for name, lb in ns_lab.status()["load_balancers"].items()}
    assert after == before


def test_lab_env_prints_a_namespace_s_environment(state: Path, info: LabInfo) -> None:
    def lab_env(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "chaos-dynamo"), "lab", "env", "--format", "json", "--state-file", str(state),
                               *args], capture_output=True, text=True, timeout=60)

    env = json.loads(lab_env("--namespace", A).stdout)
    assert env["AWS_ENDPOINT_URL_DYNAMODB"] == f"http://dynamodb.{A}.lab.internal:{info.lb_port}"
    assert env["CHAOS_DYNAMO_NAMESPACE"] == A and env["CHAOS_DYNAMO_ZONES"] == f"{A}.lab.internal"
    refused = lab_env("--namespace", "team-c")
    assert refused.returncode == 2 and "--namespace: 'team-c' is not a namespace of the lab" in refused.stderr


def test_the_safety_net_restores_a_namespace_from_its_own_plan_table(ns_lab: Lab, info: LabInfo) -> None:
    """runner.ensure_restored on a namespace's view: its endpoint comes back with the newest
    plan of *its* plan table, B's load-balancer fault and endpoint are left alone."""
    from chaos_dynamo.endpoint.actions import empty_endpoint
    from chaos_dynamo.lbfleet.actions import reset_lb_faults, set_lb_faults
    from chaos_dynamo.runner import ensure_restored

    view = info.scoped(A)
    ep = view.primary_endpoint
    only = view.load_balancers[0]
    store = PlanStore(make_client("dynamodb", info.api_url, info.region), view.plan_table)
    newest = store.newest()
    assert newest is not None
    store.put(Plan(newest.generation + 1, ((ep.name, (PlanEntry(only["name"], only["address"], 10),)),)))
    set_lb_faults(f"{B}-lb-2", latency=0.01, configuration=in_ns(info, B))
    try:
        empty_endpoint(configuration=in_ns(info, A))
        assert query(info.dns, ep.name, "A", timeout=2.0, retries=2).addresses == ()
        safety = ensure_restored(view)
        assert safety.restored_by_runner and safety.restored == [ep.name] and safety.roundtrip, safety
        assert query(info.dns, ep.name, "A", timeout=2.0, retries=2).addresses == (only["address"],)
        assert ns_lab.status()["load_balancers"][f"{B}-lb-2"]["faults"]["latency"] == 0.01
    finally:
        reset_lb_faults(configuration=in_ns(info, B))


def _epoch(text: str) -> float:
    """A journal's time stamp (ISO, UTC when it names no zone) in seconds since the epoch."""
    stamp = datetime.fromisoformat(text)
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


# --- a namespace the lab lacks, and `chaos-dynamo run` without a lab ------------------------------

def resolves_in(namespace: str) -> dict[str, Any]:
    """A read-only experiment in ``namespace``: its endpoint resolves, before, during and after."""
    resolves = {"type": "probe", "name": "endpoint-resolves", "tolerance": {"type": "range", "range": [1, 1000]},
                "provider": {"type": "python", "module": "chaos_dynamo.endpoint.probes",
                             "func": "endpoint_addresses", "arguments": {"endpoint": ""}}}
    return {"version": "1.0.0", "title": f"{namespace} resolves", "description": "read-only",
            "configuration": {"chaos_dynamo_namespace": namespace},
            "steady-state-hypothesis": {"title": "it resolves", "probes": [resolves]},
            "method": [dict(resolves, name="still-resolves")]}


def test_an_unknown_namespace_is_an_error_of_its_own_and_its_batch_partner_runs(
        info: LabInfo, state: Path, tmp_path: Path) -> None:
    """One experiment in team-a, one in team-c (not a namespace of this lab): their scopes are
    disjoint, so they are one batch; the team-a one runs and passes, the other is reported
    without running, naming chaos_dynamo_namespace."""
    from chaos_dynamo.runner import Interrupt
    from chaos_dynamo.verify.core import Progress, verify_all
    from chaos_dynamo.verify.experiments import inspect

    paths = [tmp_path / "in-team-a.json", tmp_path / "in-team-c.json"]
    for path, namespace in zip(paths, (A, "team-c"), strict=True):
        path.write_text(json.dumps(resolves_in(namespace)))
    specs = [inspect(path) for path in paths]
    said: list[str] = []
    journals = tmp_path / "journals"
    journals.mkdir()
    (journals / "in-team-c.json").write_text("{}")  # an earlier run's journal is not this run's
    ok, bad = verify_all(specs, journal_dir=journals, jobs=2, shared=info, state_file=str(state),
                         interrupt=Interrupt(), progress=Progress(specs, said.append))
    assert sum("started (shared lab, batch of 2)" in line for line in said) == 2, said
    assert ok.status == "passed", (ok.headline, ok.lines)
    assert ok.journal is not None and json.loads(ok.journal.read_text())["status"] == "completed"
    assert bad.status == "error", (bad.headline, bad.lines)
    assert "chaos_dynamo_namespace: 'team-c' is not a namespace of the lab; use one of ['team-a', 'team-b']" \
        in bad.headline
    assert bad.journal is None and not (journals / "in-team-c.json").exists(), "it did not run"


def test_run_without_a_lab_starts_one_with_the_experiment_s_namespace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`chaos-dynamo run` of an experiment in team-a with no lab running: the lab it starts for
    the run has team-a, and the run holds."""
    from chaos_dynamo import runner

    experiment = tmp_path / "in-team-a.json"
    experiment.write_text(json.dumps(resolves_in(A)))
    state = tmp_path / "none-running" / "lab.json"
    for key in [k for k in os.environ if k.startswith("CHAOS_DYNAMO_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("CHAOS_DYNAMO_STATE", str(state))  # no lab there: the run starts one
    monkeypatch.setattr(runner, "isolate_from_aws", lambda: None)  # leave this test process's environment
    code = runner.run_experiment(experiment, journal=tmp_path / "journal.json")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "starting a lab for this run" in out and "verdict: HELD" in out
    assert f"timeline of dynamodb.{A}.lab.internal:" in out, "the run's activities acted in team-a"
    assert not state.exists(), "the lab started for the run is gone"
