"""The service supervisor's checks: bad input names the field and starts nothing; source
addresses; records whose processes are gone (or whose pids now belong to someone else)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.clock import wait_until
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lab.state import EndpointInfo, LabInfo
from chaos_dynamo.services import supervisor
from chaos_dynamo.services.registry import (
    Instance,
    ServiceRecord,
    read_record,
    services_dir,
    write_record,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]

FAKE_LAB = LabInfo(
    pid=1, api_url="http://127.0.0.1:9", dns_host="127.0.0.1", dns_port=9, lb_port=9, region="us-east-1",
    emulator_url="http://127.0.0.1:9", embedded=True, seed=0, plan_table="plans", record_ttl=5,
    propagation_delay=0.0, started_at=0.0, zones={"us-east-1.amazonaws.com": "Z1"},
    endpoints=(EndpointInfo("dynamodb.us-east-1.amazonaws.com", "us-east-1.amazonaws.com", "Z1", False),),
)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "lab.json"
    yield path
    supervisor.stop_all(path, timeout=1.0)


def _spawn(env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A process in its own session, like an instance (with ``env`` added)."""
    return subprocess.Popen(SLEEPER, env=os.environ | (env or {}), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "no spaces", "kind": "hardened"}, "service"),
        ({"name": ""}, "service"),
        ({"name": "svc"}, "kind"),
        ({"name": "svc", "kind": "turbo"}, "kind"),
        ({"name": "svc", "kind": "hardened", "command": SLEEPER}, "command"),
        ({"name": "svc", "command": "no-such-program-chaos-dynamo --x"}, "command"),
        ({"name": "svc", "command": "python3 'unbalanced"}, "command"),
        ({"name": "svc", "command": [1, 2]}, "command"),
        ({"name": "svc", "kind": "hardened", "instances": 0}, "instances"),
        ({"name": "svc", "kind": "hardened", "instances": 65}, "instances"),
        ({"name": "svc", "kind": "hardened", "instances": "two"}, "instances"),
        ({"name": "svc", "kind": "hardened", "instances": True}, "instances"),
        ({"name": "svc", "kind": "hardened", "instances": 1.5}, "instances"),
        ({"name": "svc", "kind": "hardened", "rate": 0}, "rate"),
        ({"name": "svc", "kind": "hardened", "rate": 20000}, "rate"),
        ({"name": "svc", "kind": "hardened", "rate": "nan"}, "rate"),
        ({"name": "svc", "kind": "hardened", "concurrency": 0}, "concurrency"),
        ({"name": "svc", "kind": "hardened", "concurrency": 2000}, "concurrency"),
        ({"name": "svc", "kind": "hardened", "seed": "x"}, "seed"),
        ({"name": "svc", "command": SLEEPER, "health_url": "http://10.0.0.1:80/health"}, "health_url"),
        ({"name": "svc", "command": SLEEPER, "health_url": "https://127.0.0.1:80/health"}, "health_url"),
        ({"name": "svc", "command": SLEEPER, "health_url": "http://127.0.0.1/health"}, "health_url"),
        ({"name": "svc", "kind": "hardened", "health_url": "http://127.0.0.1:8/health"}, "health_url"),
        ({"name": "svc", "kind": "hardened", "ready_timeout": 0}, "ready_timeout"),
        # Options the supervisor sets itself, abbreviated or not, cannot be overridden by args.
        ({"name": "svc", "kind": "naive", "args": "--kind legacy"}, "args"),
        ({"name": "svc", "kind": "naive", "args": "--kin legacy"}, "args"),
        ({"name": "svc", "kind": "naive", "args": "--rat 100"}, "args"),
        ({"name": "svc", "kind": "naive", "args": "--ready /tmp/x"}, "args"),
        ({"name": "svc", "kind": "lease-naive", "args": "--shar 0/2"}, "args"),
        ({"name": "svc", "kind": "failover-naive", "args": "--contr hardened"}, "args"),
        ({"name": "svc", "kind": "failover-hardened", "args": "--ready /tmp/x"}, "args"),
        ({"name": "svc", "kind": "failover-hardened", "args": "--down-after 0"}, "args"),
        ({"name": "svc", "kind": "failover-naive", "instances": 2}, "instances"),
    ],
)
def test_bad_input_names_the_field_and_starts_nothing(kwargs: dict[str, Any], field: str, state: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def no_popen(*args: Any, **kw: Any) -> None:
        raise AssertionError("a process was started")

    monkeypatch.setattr(supervisor.subprocess, "Popen", no_popen)
    name = kwargs.pop("name")
    with pytest.raises(ConfigError) as err:
        supervisor.start(name, state=state, lab=FAKE_LAB, **kwargs)
    assert err.value.field == field
    assert err.value.fix  # says what to do
    assert not services_dir(state).exists()  # no record, no log, no lock file


def test_field_names_follow_a_configuration_prefix() -> None:
    with pytest.raises(ConfigError) as err:
        supervisor.validate("svc", kind="hardened", instances="0", prefix="service_")
    assert err.value.field == "service_instances"
    with pytest.raises(ConfigError) as err:
        supervisor.validate("bad name", kind="hardened", prefix="service_")
    assert err.value.field == "service_name"


def test_numbers_may_be_strings_and_commands_strings() -> None:
    spec = supervisor.validate("svc", command=f"{sys.executable} -c 'print(1)'", instances="3",
                               rate="2.5", concurrency=4.0, seed="7",
                               health_url="http://127.0.0.1:80{instance}/health")
    assert spec.command == (sys.executable, "-c", "print(1)")
    assert (spec.kind, spec.instances, spec.rate, spec.concurrency, spec.seed) == ("command", 3, 2.5, 4, 7)
    assert spec.instance_health_url(1) == "http://127.0.0.1:801/health"
    assert supervisor.instance_argv(spec, 1, Path("r")) == list(spec.command)
    reference = supervisor.validate("ref", kind="standard", rate=3, seed=10)
    argv = supervisor.instance_argv(reference, 2, Path("/x/ref-2.ready"))
    assert argv[:3] == [sys.executable, "-m", "chaos_dynamo.services.reference"]
    assert argv[argv.index("--seed") + 1] == "12" and argv[argv.index("--kind") + 1] == "standard"
    assert argv[argv.index("--http") + 1] == "127.0.0.1:0"
    assert argv[argv.index("--ready-file") + 1] == "/x/ref-2.ready"


def test_instance_env_carries_the_contract(tmp_path: Path) -> None:
    spec = supervisor.validate("checkout", command=SLEEPER)
    state_file = tmp_path / "lab.json"
    env = supervisor.instance_env(spec, 3, FAKE_LAB, state_file, "127.0.0.104",
                                  base={"PATH": "/bin", "CHAOS_DYNAMO_SOURCE_ADDRESS": "127.0.0.9"})
    assert env["PATH"] == "/bin"
    assert env["AWS_SDK_UA_APP_ID"] == env["CHAOS_DYNAMO_SERVICE"] == "checkout"
    assert env["CHAOS_DYNAMO_SOURCE_ADDRESS"] == "127.0.0.104"
    assert env["CHAOS_DYNAMO_CALL_LOG"] == str(tmp_path / "calls")
    assert env["CHAOS_DYNAMO_INSTANCE"] == "3"
    assert env["CHAOS_DYNAMO_STATE"] == str(state_file)
    assert env["AWS_ENDPOINT_URL_DYNAMODB"] == "http://dynamodb.us-east-1.amazonaws.com:9"
    assert env["CHAOS_DYNAMO_DNS"] == "127.0.0.1:9"
    without = supervisor.instance_env(spec, 0, FAKE_LAB, state_file, "",
                                      base={"CHAOS_DYNAMO_SOURCE_ADDRESS": "127.0.0.9"})
    assert "CHAOS_DYNAMO_SOURCE_ADDRESS" not in without


def test_instance_env_keeps_the_callers_aws_settings_out(tmp_path: Path) -> None:
    """A service talks to the lab only: a real endpoint, profile or key of the caller's does
    not reach it (AWS_IGNORE_CONFIGURED_ENDPOINT_URLS would even make it ignore the lab's)."""
    spec = supervisor.validate("checkout", command=SLEEPER)
    caller = {"PATH": "/bin", "AWS_ENDPOINT_URL_STS": "https://sts.amazonaws.com", "AWS_PROFILE": "prod",
              "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true", "AWS_SESSION_TOKEN": "real",
              "CHAOS_DYNAMO_ENDPOINT": "dynamodb.us-east-1.amazonaws.com"}
    env = supervisor.instance_env(spec, 0, FAKE_LAB, tmp_path / "lab.json", "", base=caller)
    assert not {"AWS_ENDPOINT_URL_STS", "AWS_PROFILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
                "AWS_SESSION_TOKEN"} & set(env)
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    assert env["AWS_ENDPOINT_URL_DYNAMODB"] == "http://dynamodb.us-east-1.amazonaws.com:9"
    assert env["AWS_SDK_UA_APP_ID"] == "checkout" and env["PATH"] == "/bin"
    assert env["CHAOS_DYNAMO_ENDPOINT"] == "dynamodb.us-east-1.amazonaws.com"


def test_address_allocation_takes_the_lowest_free_bindable_one() -> None:
    assert supervisor.allocate_address(set()) == "127.0.0.100"
    assert supervisor.allocate_address({"127.0.0.100", "127.0.0.101"}) == "127.0.0.102"
    assert supervisor.allocate_address(set(), bindable=lambda a: a != "127.0.0.100") == "127.0.0.101"
    assert supervisor.allocate_address(set(), bindable=lambda a: False) == ""
    every = {f"127.0.0.{n}" for n in range(100, 251)}
    assert supervisor.allocate_address(every - {"127.0.0.250"}) == "127.0.0.250"
    with pytest.raises(ConfigError) as err:
        supervisor.allocate_address(every)
    assert err.value.field == "service"


def test_no_recorded_address_is_handed_out_again_live_or_not(state: Path) -> None:
    """The probes attribute DNS queries by the recorded addresses, dead records included."""
    other = _spawn({"CHAOS_DYNAMO_SERVICE": "other"})
    try:
        write_record(ServiceRecord("other", "command", tuple(SLEEPER), "127.0.0.100",
                                   (Instance(0, other.pid),)), state)
        write_record(ServiceRecord("ghost", "command", tuple(SLEEPER), "127.0.0.101",
                                   (Instance(0, _dead_pid()),)), state)
        record = supervisor.start("mine", command=SLEEPER, state=state, lab=FAKE_LAB)
        assert record.source_address == "127.0.0.102"
        assert supervisor.running_instances("mine", state) == 1
        assert supervisor.running_instances("ghost", state) == 0
    finally:
        supervisor.stop("mine", state)
        _kill(other)


def test_a_stale_record_is_replaced_and_a_live_one_refused(state: Path) -> None:
    write_record(ServiceRecord("svc", "command", ("gone",), "127.0.0.100", (Instance(0, _dead_pid()),)), state)
    record = supervisor.start("svc", command=SLEEPER, instances=2, state=state, lab=FAKE_LAB)
    try:
        assert read_record("svc", state) == record
        assert record.command == tuple(SLEEPER) and len(record.instances) == 2
        assert all(os.getpgid(i.pid) == i.pid for i in record.instances)  # own process groups
        assert all(Path(i.log_path).exists() for i in record.instances)
        with pytest.raises(ConfigError) as err:
            supervisor.start("svc", kind="hardened", state=state, lab=FAKE_LAB)
        assert err.value.field == "service" and "stop it first" in str(err.value)
        assert read_record("svc", state) == record  # unchanged
    finally:
        result = supervisor.stop("svc", state)
    assert result["stopped"] == 2 and result["was_running"]
    assert read_record("svc", state) is None
    assert all(not supervisor.group_members(i.pid) for i in record.instances)


def test_a_recycled_pid_is_left_alone(state: Path) -> None:
    # The recorded pid now belongs to a process that is not the service (no marker in its env).
    stranger = _spawn()
    try:
        write_record(ServiceRecord("svc", "command", ("x",), "", (Instance(0, stranger.pid),)), state)
        assert not supervisor.is_ours(stranger.pid, "svc")
        assert supervisor.running_instances("svc", state) == 0
        result = supervisor.stop("svc", state, timeout=0.5)
        assert result == {"service": "svc", "was_running": False, "stopped": 0, "killed": 0, "pids": []}
        assert stranger.poll() is None  # not signalled
        assert read_record("svc", state) is None  # the stale record is gone
    finally:
        _kill(stranger)


def test_stopping_what_is_not_running_is_a_no_op(state: Path) -> None:
    assert supervisor.stop("nothing", state)["stopped"] == 0
    assert supervisor.stop_all(state) == []
    with pytest.raises(ConfigError):
        supervisor.stop("../etc", state)


def test_a_command_that_exits_at_once_is_reported_with_its_log(state: Path) -> None:
    from chaos_dynamo.errors import LabError

    command = [sys.executable, "-c", "import sys; print('cannot bind the port'); sys.exit(3)"]
    with pytest.raises(LabError) as err:
        supervisor.start("quitter", command=command, instances=2, state=state, lab=FAKE_LAB)
    assert "exited with code 3" in str(err.value) and "cannot bind the port" in str(err.value)
    assert read_record("quitter", state) is None


def test_marks_tell_which_services_started_since(state: Path) -> None:
    supervisor.start("early", command=SLEEPER, state=state, lab=FAKE_LAB)
    before = supervisor.marks(state)
    late = supervisor.start("late", command=SLEEPER, state=state, lab=FAKE_LAB)
    stopped = supervisor.stop_started_since(before, state)
    assert [r["service"] for r in stopped] == ["late"]
    assert wait_until(lambda: not supervisor.group_members(late.instances[0].pid), 5)
    assert supervisor.running_instances("early", state) == 1


def test_placeholders_become_the_instance_index() -> None:
    spec = supervisor.validate("s", command=[sys.executable, "--port=80{instance}"],
                               health_url="http://localhost:80{instance}/health")
    assert supervisor.instance_argv(spec, 2, Path("r")) == [sys.executable, "--port=802"]
    assert spec.instance_health_url(2) == "http://localhost:802/health"


def test_control_settings_from_configuration() -> None:
    from chaoslib.exceptions import InvalidControl

    from chaos_dynamo.services import control

    settings = control.service_settings({"service_name": "checkout", "service_kind": "hardened",
                                         "service_instances": "3", "service_rate": "2",
                                         "service_warmup": "1.5", "other_key": "ignored"})
    assert settings | {"command": None} == {
        "name": "checkout", "kind": "hardened", "command": None, "instances": 3, "rate": 2.0,
        "concurrency": 8, "seed": 0, "health_url": "", "args": [], "warmup": 1.5, "start": True}
    # A command (e.g. from the environment) wins over a default kind; arguments win over both.
    settings = control.service_settings({"service_name": "checkout", "service_kind": "hardened",
                                         "service_command": f"{sys.executable} app.py"},
                                        {"service_instances": 2})
    assert (settings["kind"], settings["command"], settings["instances"]) == ("", [sys.executable, "app.py"], 2)
    assert control.service_settings({"service_name": "checkout"})["start"] is False
    for config, field in [({}, "service_name"),
                          ({"service_name": "c", "service_kind": "turbo"}, "service_kind"),
                          ({"service_name": "c", "service_kind": "naive", "service_rate": "fast"}, "service_rate"),
                          ({"service_name": "c", "service_kind": "naive", "service_warmup": -2}, "service_warmup")]:
        with pytest.raises(ConfigError) as err:
            control.service_settings(config)
        assert err.value.field == field
    with pytest.raises(ConfigError):
        control.service_settings({"service_name": "c"}, {"instances": 2})  # not a known key
    with pytest.raises(InvalidControl):
        control.validate_control({"name": "svc", "provider": {"arguments": {"instances": 2}}})
    control.validate_control({"name": "svc", "provider": {"arguments": {"service_instances": 2}}})


def test_a_new_run_clears_only_its_own_old_call_logs(tmp_path: Path) -> None:
    from chaos_dynamo.services.registry import calls_dir

    state = tmp_path / "lab.json"
    calls = calls_dir(state)
    calls.mkdir(parents=True)
    for name in ("orders-101.jsonl", "orders-7.jsonl", "orders-eu-5.jsonl", "billing-3.jsonl", "orders-x.jsonl"):
        (calls / name).write_text("{}\n")
    assert supervisor.clear_call_logs("orders", state) == 2
    assert sorted(p.name for p in calls.iterdir()) == ["billing-3.jsonl", "orders-eu-5.jsonl", "orders-x.jsonl"]
