"""Failover probes, control and probes/failover against a real HTTP server on 127.0.0.1 serving
scripted answer and change histories in the lab's format."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from chaoslib.exceptions import InterruptExecution, InvalidControl

from chaos_dynamo.clock import FakeClock
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.failover import control, probes
from chaos_dynamo.failover.control import RunRecord, read_run, run_path, write_run
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.tolerances import at_least, at_most

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAME = "app.example.com"
POOL = "pool.app.example.com"
A, B, C, D = "127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"


class FakeLab:
    """The lab's /_chaos_dynamo/info and Route 53 history routes, scripted.

    ``answers``: name -> entries (``{"time", "addresses", "roles", "cause"}``); ``later``:
    answers served from the ``after``-th answers request on (a history that grows while a
    probe waits). ``changes``: name -> batches.
    """

    def __init__(self) -> None:
        self.answers: dict[str, list[dict[str, Any]]] = {}
        self.changes: dict[str, list[dict[str, Any]]] = {}
        self.later: tuple[int, dict[str, list[dict[str, Any]]]] | None = None
        self.raw: list[Any] | None = None  # answers served as they are (malformed ones)
        self.dynamic: Callable[[], dict[str, list[dict[str, Any]]]] | None = None  # answers, asked each time
        self.routes = True
        self.started_at = 1_000_000_000.0
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.requests.append(self.path)
                status, body = owner.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - boto3's Route 53 calls: not served
                self.do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def info(self) -> LabInfo:
        return LabInfo(pid=1, api_url=self.url, dns_host="127.0.0.1", dns_port=53, lb_port=1, region="us-east-1",
                       emulator_url=self.url, embedded=True, seed=1, plan_table="plans", record_ttl=5,
                       propagation_delay=0.0, started_at=self.started_at, zones={"example.com": "Z1"})

    def answer(self, path: str) -> tuple[int, Any]:
        url = urlparse(path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        since = float(query["since"]) if "since" in query else None
        if url.path == "/_chaos_dynamo/info":
            return 200, json.loads(self.info().to_json())
        if url.path == "/_chaos_dynamo/route53/answers" and self.raw is not None:
            return 200, self.raw
        if url.path == "/_chaos_dynamo/route53/answers" and self.routes:
            served = self.answers if self.dynamic is None else self.dynamic()
            asked = sum("/route53/answers" in r for r in self.requests)
            if self.later is not None and asked >= self.later[0]:
                served = self.later[1]
            names = [query["name"]] if "name" in query else sorted(served)
            out = []
            for name in names:
                entries = sorted(served.get(name, []), key=lambda e: e["time"])
                if since is not None:
                    before = [e for e in entries if e["time"] < since]
                    entries = before[-1:] + [e for e in entries if e["time"] >= since]
                out += [{"name": name, **e} for e in entries]
            return 200, out
        if url.path == "/_chaos_dynamo/route53/changes" and self.routes:
            batches = self.changes.get(query.get("name", ""), [])
            return 200, [b for b in batches if since is None or b["time"] >= since]
        return 404, {"error": f"no route {url.path}"}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLab]:
    lab = FakeLab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def lab(server: FakeLab) -> FakeLab:
    server.answers, server.changes, server.later, server.routes, server.raw = {}, {}, None, True, None
    server.dynamic = None
    server.started_at = 1_000_000_000.0
    server.requests.clear()
    return server


@pytest.fixture
def config(lab: FakeLab, tmp_path: Path) -> dict[str, Any]:
    return {"chaos_dynamo_api": lab.url, "chaos_dynamo_state": str(tmp_path / "lab.json")}


def entry(t: float, *addresses: str, roles: tuple[str, ...] = (), cause: str = "change") -> dict[str, Any]:
    return {"time": t, "addresses": sorted(addresses), "roles": sorted(roles), "cause": cause}


def flapping(now: float) -> list[dict[str, Any]]:
    """Three members; C leaves and returns twice in the last 100 s, after one cycle long before."""
    return [entry(now - 1000, A, B, C, cause="start"), entry(now - 900, A, B), entry(now - 880, A, B, C),
            entry(now - 100, A, B), entry(now - 90, A, B, C), entry(now - 50, A, B), entry(now - 40, A, B, C)]


# --- the probes over HTTP ---------------------------------------------------------------------


def test_answer_flaps_since_a_time(lab: FakeLab, config: dict[str, Any]) -> None:
    now = time.time()
    lab.answers[NAME] = flapping(now)
    result = probes.answer_flaps(NAME, since=now - 200, configuration=config)
    assert result["flaps"] == 2 and result["total"] == 2 and result["by_member"] == {C: 2}
    assert result["name"] == NAME and result["window"] == 300.0 and result["basis"] == "since"
    assert result["since"] == now - 200 and now <= result["until"] <= time.time()
    assert result["at"] == now - 90 and result["fleet"] == 3
    assert at_most(result, limit="2", key="flaps") and not at_most(result, limit="1", key="flaps")


def test_the_whole_history_counts_when_since_is_before_it(lab: FakeLab, config: dict[str, Any]) -> None:
    now = time.time()
    lab.answers[NAME] = flapping(now)
    result = probes.answer_flaps(NAME, window=2000, since=now - 5000, configuration=config)
    assert (result["flaps"], result["total"]) == (3, 3)
    assert result["since"] == now - 1000 and "history begins later" in result["basis"]


def test_without_since_or_a_run_the_latest_window_is_judged(lab: FakeLab, config: dict[str, Any]) -> None:
    now = time.time()
    lab.answers[NAME] = flapping(now)
    result = probes.answer_flaps(NAME, window=60, configuration=config)
    assert result["flaps"] == 1 and "latest 60 s" in result["basis"]  # only the return at now - 40
    assert result["until"] - result["since"] == pytest.approx(60)


def test_the_run_of_the_failover_control_is_the_span(lab: FakeLab, config: dict[str, Any]) -> None:
    now = time.time()
    lab.answers[NAME] = flapping(now)
    write_run(RunRecord(now - 60, "failover-flap"), config["chaos_dynamo_state"])
    result = probes.answer_flaps(NAME, configuration=config)
    assert result["since"] == now - 60 and result["flaps"] == 1
    assert "the run of 'failover-flap' (running" in result["basis"]


def test_an_ended_run_is_judged_up_to_its_end(lab: FakeLab, config: dict[str, Any]) -> None:
    now = time.time()
    lab.answers[NAME] = flapping(now)
    write_run(RunRecord(now - 120, "done", ended_at=now - 70), config["chaos_dynamo_state"])
    result = probes.answer_flaps(NAME, configuration=config)
    assert (result["since"], result["until"], result["flaps"]) == (now - 120, now - 70, 1)
    assert "ended" in result["basis"]


def test_a_run_file_older_than_the_lab_is_ignored(lab: FakeLab, config: dict[str, Any]) -> None:
    now = time.time()
    lab.answers[NAME] = flapping(now)
    lab.started_at = now - 500
    write_run(RunRecord(now - 2000, "an old lab's run"), config["chaos_dynamo_state"])
    result = probes.answer_flaps(NAME, window=300, configuration=config)
    assert "latest 300 s" in result["basis"] and result["flaps"] == 2


def test_capacity_probes_over_http(lab: FakeLab, config: dict[str, Any]) -> None:
    now = time.time()
    lab.answers[NAME] = [entry(now - 300, A, B, C, D), entry(now - 100, A, B), entry(now - 80, A),
                         entry(now - 20, A, B, C, D)]
    since = now - 200
    removed = probes.capacity_removed_per_minute(NAME, since=since, configuration=config)
    assert removed["fraction"] == 0.75 and removed["removals"] == 3 and removed["total_removals"] == 3
    assert removed["fleet"] == 4 and removed["at"] == now - 100 and removed["window"] == 60.0
    minimum = probes.min_capacity_fraction(NAME, since=since, configuration=config)
    assert (minimum["fraction"], minimum["at"], minimum["members_at_min"]) == (0.25, now - 80, [A])
    assert not at_least(minimum, limit=0.5, key="fraction")
    degraded = probes.seconds_degraded(NAME, since=since, configuration=config)
    assert degraded["seconds"] == pytest.approx(80) and degraded["periods"] == [[now - 100, now - 20]]
    assert degraded["fraction_of_span"] == pytest.approx(80 / (degraded["until"] - since))
    half = probes.seconds_degraded(NAME, below=0.5, since=since, configuration=config)
    assert half["seconds"] == pytest.approx(60) and half["below"] == 0.5
    bigger = probes.min_capacity_fraction(NAME, since=since, fleet_size=8, configuration=config)
    assert (bigger["fraction"], bigger["fleet"]) == (0.125, 8)


def test_failover_oscillations_over_http(lab: FakeLab, config: dict[str, Any]) -> None:
    now = time.time()
    lab.answers[NAME] = [entry(now - 100, A, B, roles=("PRIMARY",)), entry(now - 80, D, roles=("SECONDARY",)),
                         entry(now - 70, A, roles=("PRIMARY",)), entry(now - 60, D, roles=("SECONDARY",))]
    result = probes.failover_oscillations(NAME, since=now - 200, configuration=config)
    assert (result["oscillations"], result["switches"]) == (2, 3)
    assert result["roles"] == [{"time": now - 100, "role": "PRIMARY"}, {"time": now - 80, "role": "SECONDARY"},
                               {"time": now - 70, "role": "PRIMARY"}, {"time": now - 60, "role": "SECONDARY"}]
    assert probes.failover_oscillations(NAME, window=5, since=now - 200, configuration=config)["oscillations"] == 0


def test_capacity_fraction_now(lab: FakeLab, config: dict[str, Any]) -> None:
    now = time.time()
    lab.answers[NAME] = [entry(now - 100, A, B, C, D), entry(now - 10, A, B, C)]
    result = probes.capacity_fraction(NAME, since=now - 200, configuration=config)
    assert (result["fraction"], result["members"], result["fleet"]) == (0.75, [A, B, C], 4)
    assert result["changed_at"] == now - 10 and result["waited"] < 5


def test_capacity_fraction_waits_until_the_fraction_is_reached(lab: FakeLab, config: dict[str, Any]) -> None:
    clock = FakeClock(time.time())
    now = clock.now()
    lab.answers[NAME] = [entry(now - 100, A, B, C), entry(now - 10, A)]
    lab.later = (4, {NAME: [*lab.answers[NAME], entry(now + 1, A, B, C)]})
    subject = probes._subject(NAME, "", now - 200, 0, config)
    result = probes.capacity_now(subject, 1.0, 30.0, clock)
    assert result["fraction"] == 1.0 and result["waited"] == pytest.approx(1.5)  # read 4 times, 0.5 s apart
    lab.later = None
    lab.requests.clear()
    missed = probes.capacity_now(subject, 1.0, 3.0, clock)
    assert missed["fraction"] == pytest.approx(1 / 3) and missed["waited"] == pytest.approx(3.0)


def test_record_changes(lab: FakeLab, config: dict[str, Any]) -> None:
    now = time.time()
    lab.answers[POOL] = [entry(now - 100, A, B)]
    lab.changes[POOL] = [{"time": now - t, "change_id": f"/change/C{t}", "zone_id": "/hostedzone/Z1",
                          "comment": "controller", "changes": [{"action": "DELETE", "name": POOL + ".",
                                                                "type": "A", "set_identifier": "lb-1"}]}
                         for t in (90, 80, 70, 5)]
    result = probes.record_changes(POOL, since=now - 200, configuration=config)
    assert (result["changes"], result["total"], result["at"]) == (3, 4, now - 90)
    assert result["batches"][0]["changes"] == [{"action": "DELETE", "name": POOL + ".", "type": "A",
                                                "set_identifier": "lb-1"}]
    lab.answers.clear()  # a name with changes (of records that answer nothing) is known
    assert probes.record_changes(POOL, since=now - 200, configuration=config)["total"] == 4
    lab.changes.clear()
    with pytest.raises(ConfigError) as caught:
        probes.record_changes(POOL, since=now - 200, configuration=config)
    assert caught.value.field == "name"


def test_failover_report_has_the_capacity_timeline_and_every_verdict(lab: FakeLab, config: dict[str, Any]) -> None:
    now = time.time()
    lab.answers[NAME] = [entry(now - 100, A, B, roles=("PRIMARY",)), entry(now - 90, roles=()),
                         entry(now - 89, D, roles=("SECONDARY",)), entry(now - 50, A, B, roles=("PRIMARY",))]
    write_run(RunRecord(now - 150, "failover-flap", method_started_at=now - 120),
              config["chaos_dynamo_state"])
    report = probes.failover_report(NAME, configuration=config)
    assert report["timeline"] == [
        {"time": now - 100, "addresses": [A, B], "fraction": 1.0, "role": "PRIMARY"},
        {"time": now - 90, "addresses": [], "fraction": 0.0, "role": None},
        {"time": now - 89, "addresses": [D], "fraction": 0.5, "role": "SECONDARY"},
        {"time": now - 50, "addresses": [A, B], "fraction": 1.0, "role": "PRIMARY"}]
    assert report["run"]["experiment"] == "failover-flap" and report["run"]["method_started_at"] == now - 120
    assert report["flaps"]["flaps"] == 2 and report["flaps"]["by_member"] == {A: 1, B: 1}
    # A and B removed at -90, D at -50 (the failback swaps D out): 3 of a fleet of 2 in one minute
    assert report["capacity_removed"]["fraction"] == 1.5 and report["capacity_removed"]["removals"] == 3
    assert report["min_capacity"]["fraction"] == 0.0 and report["min_capacity"]["at"] == now - 90
    assert report["degraded"]["seconds"] == pytest.approx(40)
    assert (report["oscillations"]["oscillations"], report["oscillations"]["switches"]) == (1, 2)
    assert report["changes"]["total"] == 0
    assert report["capacity_at_end"] == {"fraction": 1.0, "members": [A, B], "since": now - 50}
    assert report["since"] == now - 100 and "history begins later" in report["basis"]  # not at the run's start
    assert report["fleet"] == 2 and report["timeline_dropped"] == 0
    json.dumps(report)  # the journal holds it


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "field"), [
    (lambda c: probes.answer_flaps("", configuration=c), "name"),
    (lambda c: probes.answer_flaps("bad name", configuration=c), "name"),
    (lambda c: probes.answer_flaps(NAME, window=0, configuration=c), "window"),
    (lambda c: probes.answer_flaps(NAME, window="soon", configuration=c), "window"),
    (lambda c: probes.answer_flaps(NAME, fleet_size=-1, configuration=c), "fleet_size"),
    (lambda c: probes.answer_flaps(NAME, fleet_size=2.5, configuration=c), "fleet_size"),
    (lambda c: probes.answer_flaps(NAME, since=-5, configuration=c), "since"),
    (lambda c: probes.answer_flaps(NAME, zone="example.org", configuration=c), "zone"),
    (lambda c: probes.seconds_degraded(NAME, below=0, configuration=c), "below"),
    (lambda c: probes.capacity_fraction(NAME, wait_for=2, configuration=c), "wait_for"),
    (lambda c: probes.capacity_fraction(NAME, timeout=-1, configuration=c), "timeout"),
    (lambda c: probes.failover_report(NAME, removal_window=0, configuration=c), "removal_window"),
])
def test_bad_arguments_name_the_field_and_read_nothing(lab: FakeLab, config: dict[str, Any], call: Any,
                                                       field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        call(config)
    assert caught.value.field == field and caught.value.fix
    assert lab.requests == []


def test_string_numbers_from_an_env_typed_configuration_are_accepted(lab: FakeLab, config: dict[str, Any]) -> None:
    now = time.time()
    lab.answers[NAME] = flapping(now)
    result = probes.answer_flaps(NAME, window="300", fleet_size="3", since=str(now - 200),  # type: ignore[arg-type]
                                 configuration=config)
    assert result["flaps"] == 2 and result["fleet"] == 3


def test_a_since_in_the_future_is_an_error(lab: FakeLab, config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        probes.answer_flaps(NAME, since=time.time() + 3600, configuration=config)
    assert caught.value.field == "since" and "after now" in str(caught.value)


def test_a_name_the_lab_does_not_answer_for_is_an_error_listing_the_names_it_does(
        lab: FakeLab, config: dict[str, Any]) -> None:
    now = time.time()
    lab.answers[NAME] = flapping(now)
    with pytest.raises(ConfigError) as caught:
        probes.min_capacity_fraction("ap.example.com.", since=now - 100, configuration=config)
    assert caught.value.field == "name" and "'ap.example.com'" in str(caught.value)
    assert f"it answers for {NAME}" in str(caught.value)


def test_names_and_zones_are_compared_without_case_or_trailing_dot(lab: FakeLab, config: dict[str, Any]) -> None:
    now = time.time()
    lab.answers[NAME] = flapping(now)
    result = probes.answer_flaps("App.Example.COM.", zone="EXAMPLE.com.", since=now - 200, configuration=config)
    assert result["name"] == NAME and result["flaps"] == 2


def test_a_zone_the_lab_does_not_host_is_an_error(lab: FakeLab, config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        probes.answer_flaps(NAME, zone="app.example.com", configuration=config)
    assert caught.value.field == "zone" and "is not a hosted zone of the lab" in str(caught.value)
    assert "example.com" in str(caught.value)


def test_a_malformed_entry_is_a_lab_error_naming_its_field(lab: FakeLab, config: dict[str, Any]) -> None:
    now = time.time()
    lab.raw = [entry(now - 100, A), {"time": now - 50, "addresses": "127.0.0.1"}]
    with pytest.raises(LabError, match=r"answers\[1\]\.addresses: '127.0.0.1' is not a list of strings"):
        probes.answer_flaps(NAME, since=now - 200, configuration=config)
    lab.raw = [{"addresses": [A]}]
    with pytest.raises(LabError, match=r"answers\[0\]\.time: missing"):
        probes.answer_flaps(NAME, since=now - 200, configuration=config)


def test_a_lab_without_the_history_routes_says_how_to_get_them(lab: FakeLab, config: dict[str, Any]) -> None:
    lab.routes = False
    with pytest.raises(LabError, match="keeps no DNS answer history .* answered 404.*lab down"):
        probes.answer_flaps(NAME, configuration=config)


def test_no_lab_is_a_lab_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(LabError):
        probes.answer_flaps(NAME, configuration={"chaos_dynamo_api": f"http://127.0.0.1:{port}"})


# --- the control ---------------------------------------------------------------------------------


def test_the_control_records_the_run_and_replaces_a_stale_one(config: dict[str, Any]) -> None:
    state = config["chaos_dynamo_state"]
    write_run(RunRecord(1.0, "an earlier run", 2.0, 3.0, 4.0), state)
    before = time.time()
    control.before_experiment_control({"title": "failover flap"}, configuration=config)
    record = read_run(state)
    assert record is not None and record.experiment == "failover flap"
    assert before <= record.started_at <= time.time()
    assert (record.method_started_at, record.method_ended_at, record.ended_at) == (None, None, None)
    assert run_path(state) == Path(state).parent / "failover" / "run.json"
    control.before_method_control({}, configuration=config)
    control.after_method_control({}, state=None, configuration=config)
    control.after_experiment_control({}, state=None, configuration=config)
    marked = read_run(state)
    assert marked is not None and marked.started_at == record.started_at
    assert marked.method_started_at is not None and marked.method_ended_at is not None
    assert record.started_at <= marked.method_started_at <= marked.method_ended_at <= (marked.ended_at or 0)
    assert set(json.loads(run_path(state).read_text())) == {
        "started_at", "experiment", "method_started_at", "method_ended_at", "ended_at"}


def test_the_control_refuses_arguments_and_an_unwritable_state_dir(tmp_path: Path) -> None:
    with pytest.raises(InvalidControl, match="takes no arguments"):
        control.validate_control({"name": "run", "provider": {"arguments": {"window": 5}}})
    control.validate_control({"name": "run", "provider": {"type": "python"}})
    with pytest.raises(InterruptExecution, match="takes no arguments"):
        control.before_experiment_control({}, configuration={"chaos_dynamo_state": str(tmp_path / "s.json")},
                                          window=5)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(InterruptExecution, match="could not write the failover run file"):
        control.before_experiment_control({}, configuration={"chaos_dynamo_state": str(blocker / "lab.json")})


def test_marks_without_a_run_and_unreadable_run_files_are_harmless(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    state = str(tmp_path / "lab.json")
    control.after_method_control({}, configuration={"chaos_dynamo_state": state})
    assert read_run(state) is None and "no run file" in caplog.text
    run_path(state).parent.mkdir(parents=True, exist_ok=True)
    run_path(state).write_text("{not json")
    assert read_run(state) is None
    run_path(state).write_text(json.dumps({"experiment": "x"}))
    assert read_run(state) is None


# --- probes/failover -----------------------------------------------------------------------------


def cli(*args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, str(ROOT / "probes" / "failover"), *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout + done.stderr
    return done.returncode, json.loads(lines[0])


def test_probes_failover_executable(lab: FakeLab) -> None:
    now = time.time()
    lab.answers[NAME] = flapping(now)
    common = ("--name", NAME, "--api", lab.url, "--since", repr(now - 200))
    code, verdict = cli("flaps", *common, "--max-flaps", "3")
    assert code == 0 and verdict["ok"] is True and verdict["checks"][0]["value"] == 2
    code, verdict = cli("flaps", *common, "--max-flaps", "1")
    assert code == 1 and verdict["checks"] == [{"name": "flaps", "value": 2, "op": "<=", "limit": 1, "ok": False}]
    code, verdict = cli("report", *common, "--max-flaps", "2", "--min-capacity", "0.6")
    assert code == 0 and [c["name"] for c in verdict["checks"]] == ["flaps", "oscillations",
                                                                    "min_capacity_fraction"]
    assert verdict["result"]["timeline"][0]["addresses"] == [A, B, C]
    code, verdict = cli("report", *common, "--max-flaps", "2", "--min-capacity", "0.7")
    assert code == 1 and verdict["checks"][-1]["value"] == pytest.approx(2 / 3)
    code, verdict = cli("removed", *common)
    assert code == 2 and "needs --max-removed" in verdict["error"]
    code, verdict = cli("min-capacity", "--name", "nope.example.com", "--api", lab.url, "--min-capacity", "1")
    assert code == 2 and verdict["error"].startswith("ConfigError: name:")


# --- an experiment under chaos run ---------------------------------------------------------------


def tolerance(func: str, limit: Any, key: str) -> dict[str, Any]:
    return {"type": "probe", "name": f"{func}-{key}", "provider": {
        "type": "python", "module": "chaos_dynamo.tolerances", "func": func,
        "arguments": {"limit": limit, "key": key}}}


def test_an_experiment_with_the_control_judges_its_own_run(lab: FakeLab, tmp_path: Path) -> None:
    state = tmp_path / "lab.json"
    now = time.time()
    before_the_run = [entry(now - 1000, A, B, C, cause="start"), entry(now - 900, A, B), entry(now - 890, A, B, C)]

    def answers() -> dict[str, list[dict[str, Any]]]:
        """Member C flaps twice as soon as the method starts (as the control recorded it)."""
        run = read_run(state)
        if run is None or run.method_started_at is None:
            return {NAME: before_the_run}
        m = run.method_started_at
        return {NAME: [*before_the_run, entry(m + 0.001, A, B), entry(m + 0.002, A, B, C),
                       entry(m + 0.003, A, B), entry(m + 0.004, A, B, C)]}

    lab.dynamic = answers
    probe = {"type": "python", "module": "chaos_dynamo.failover.probes"}
    experiment = {
        "title": "failover stays calm", "description": "the failover probes under chaos run",
        "configuration": {"chaos_dynamo_api": lab.url, "chaos_dynamo_state": str(state), "max_flaps": 1,
                          "service_name": NAME},
        "controls": [{"name": "failover-run", "provider": {"type": "python",
                                                           "module": "chaos_dynamo.failover.control"}}],
        "steady-state-hypothesis": {"title": "full capacity, no flaps", "probes": [
            {"type": "probe", "name": "flaps", "tolerance": tolerance("at_most", "${max_flaps}", "flaps"),
             "provider": {**probe, "func": "answer_flaps", "arguments": {"name": "${service_name}"}}},
            {"type": "probe", "name": "full-capacity", "tolerance": tolerance("at_least", 1.0, "fraction"),
             "provider": {**probe, "func": "capacity_fraction",
                          "arguments": {"name": "${service_name}", "wait_for": 1.0, "timeout": 5}}},
        ]},
        "method": [{"type": "action", "name": "pause", "provider": {
            "type": "process", "path": sys.executable, "arguments": "-c pass"}}],
        "rollbacks": [{"type": "probe", "name": "capacity-timeline", "provider": {
            **probe, "func": "failover_report", "arguments": {"name": "${service_name}"}}}],
    }
    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(experiment))
    journal_path = tmp_path / "journal.json"
    done = subprocess.run([str(BIN / "chaos"), "--no-version-check", "--no-log-file", "run", "--journal-path",
                           str(journal_path), str(path)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    journal = json.loads(journal_path.read_text())
    assert journal["steady_states"]["before"]["steady_state_met"] is True, done.stderr
    after = {p["activity"]["name"]: p for p in journal["steady_states"]["after"]["probes"]}
    assert after["flaps"]["output"]["flaps"] == 2 and after["flaps"]["tolerance_met"] is False
    assert "the run of 'failover stays calm'" in after["flaps"]["output"]["basis"]
    assert journal["deviated"] is True
    report = journal["rollbacks"][0]["output"]
    assert [len(p["addresses"]) for p in report["timeline"]] == [3, 2, 3, 2, 3]
    assert report["run"]["experiment"] == "failover stays calm" and report["flaps"]["flaps"] == 2
    run = read_run(state)
    assert run is not None and run.method_started_at is not None and run.method_ended_at is not None
    assert run.ended_at is not None and run.started_at <= run.method_started_at <= run.ended_at


def test_the_docs_experiment_snippets_name_real_probes_arguments_and_keys() -> None:
    import inspect
    import re

    from chaos_dynamo import tolerances

    text = (ROOT / "docs" / "probes" / "failover.md").read_text()
    blocks = ["\n".join(line[4:] for line in block.splitlines())
              for block in re.findall(r"(?:^ {4}.*\n)+", text, re.M)]
    snippets = [json.loads(b) for b in blocks if b.startswith('{"type": "probe"')]
    assert len(snippets) == 6
    for snippet in snippets:
        provider = snippet["provider"]
        func = getattr(probes, provider["func"])
        assert provider["func"] in probes.__all__
        assert set(provider["arguments"]) <= set(inspect.signature(func).parameters), provider
        if "tolerance" in snippet:
            judge = snippet["tolerance"]["provider"]
            assert judge["module"] == "chaos_dynamo.tolerances" and hasattr(tolerances, judge["func"])
            assert set(judge["arguments"]) == {"limit", "key"}
            assert judge["arguments"]["key"] in func.__doc__, (provider["func"], judge["arguments"]["key"])
