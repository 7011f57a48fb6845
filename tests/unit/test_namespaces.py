"""Namespaces: the topology's validation, the view of one namespace, and what it scopes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.config import (
    default_topology,
    load_topology,
    namespaces_option,
    topology_from_mapping,
)
from chaos_dynamo.endpoint import _lab
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lab.state import EndpointInfo, LabInfo, NamespaceInfo, read_state, write_state
from chaos_dynamo.verify.experiments import lab_namespace, scope
from chaos_dynamo.verify.schedule import batches

TWO = """
[[namespaces]]
name = "team-a"
load_balancers = ["lb-1", "lb-2"]

[[namespaces]]
name = "team-b"
zone = "B.Example.Internal."
endpoint = "ddb.b.example.internal"
table_prefix = "bee_"
load_balancers = ["lb-3", "lb-4"]
"""


def toml(text: str) -> Any:
    import tomllib

    return topology_from_mapping(tomllib.loads(text))


# --- the topology ------------------------------------------------------------------------


def test_a_lab_without_namespaces_is_unchanged() -> None:
    topo = load_topology()
    assert topo == default_topology() and topo.namespaces == ()
    assert topo.default_load_balancers == topo.load_balancers and topo.all_endpoints == topo.endpoints


def test_namespaces_from_a_file_take_their_defaults_and_their_load_balancers() -> None:
    topo = toml(TWO)
    a, b = topo.namespaces
    assert (a.zone, a.endpoint, a.table_prefix, a.load_balancers) == (
        "team-a.lab.internal", "dynamodb.team-a.lab.internal", "team-a-", ("lb-1", "lb-2"))
    assert (b.zone, b.endpoint, b.table_prefix) == ("b.example.internal", "ddb.b.example.internal", "bee_")
    assert topo.plan_table_of(a) == "team-a-chaos-dynamo-plans" and topo.plan_table_of(b) == "bee_chaos-dynamo-plans"
    assert [lb.name for lb in topo.default_load_balancers] == ["lb-5", "lb-6"]
    assert [ep.name for ep in topo.all_endpoints][-2:] == ["dynamodb.team-a.lab.internal", "ddb.b.example.internal"]


def test_lab_up_namespaces_adds_three_load_balancers_each_and_keeps_the_lab_s_own() -> None:
    plain = load_topology(seed=3)
    topo = load_topology(seed=3, namespaces="2")
    assert [ns.name for ns in topo.namespaces] == ["ns1", "ns2"]
    assert topo.default_load_balancers == plain.load_balancers
    owned = [topo.namespace_load_balancers(ns) for ns in topo.namespaces]
    assert [[lb.name for lb in lbs] for lbs in owned] == [["ns1-lb-1", "ns1-lb-2", "ns1-lb-3"],
                                                          ["ns2-lb-1", "ns2-lb-2", "ns2-lb-3"]]
    assert all({lb.az for lb in lbs} == {"use1-az1", "use1-az2", "use1-az3"} for lbs in owned)
    addresses = [lb.address for lb in topo.load_balancers]
    assert len(set(addresses)) == len(addresses) and topo.host not in addresses
    assert [ns.name for ns in load_topology(namespaces="team-a,team-b").namespaces] == ["team-a", "team-b"]


@pytest.mark.parametrize(("text", "field", "problem"), [
    ('[[namespaces]]\nname = "a"\nload_balancers = ["lb-1", "lb-2"]\n'
     '[[namespaces]]\nname = "b"\nload_balancers = ["lb-2", "lb-3"]\n',
     "namespaces[1].load_balancers[0]", "'lb-2' is also in namespace 'a'"),
    ('[[namespaces]]\nname = "a"\nload_balancers = ["lb-1", "lb-9"]\n', "namespaces[0].load_balancers[1]",
     "'lb-9' is not a load balancer of the lab"),
    ('[[namespaces]]\nname = "a"\nload_balancers = ["lb-1", "lb-1"]\n', "namespaces[0].load_balancers[1]",
     "listed twice"),
    ('[[namespaces]]\nname = "a"\nload_balancers = []\n', "namespaces[0].load_balancers", "not a list"),
    ('[[namespaces]]\nname = "a"\nload_balancers = "lb-1"\n', "namespaces[0].load_balancers", "not a list"),
    ('[[namespaces]]\nname = "a"\nload_balancers = [1]\n', "namespaces[0].load_balancers[0]", "not a load balancer"),
    ('[[namespaces]]\nname = "a"\nload_balancers = ["lb-1", "lb-2", "lb-3", "lb-4", "lb-5", "lb-6"]\n',
     "namespaces", "leaving none for the lab's own endpoints"),
    ('[[namespaces]]\nname = "Team A"\n', "namespaces[0].name", "not a namespace name"),
    ('[[namespaces]]\nname = 7\n', "namespaces[0].name", "not a namespace name"),
    ('[[namespaces]]\nzone = "a.example"\n', "namespaces[0].name", "is missing"),
    ('[[namespaces]]\nname = "a"\n[[namespaces]]\nname = "a"\n', "namespaces[1].name", "used twice"),
    ('[[namespaces]]\nname = "a"\nzone = "us-east-1.amazonaws.com"\n', "namespaces[0].zone", "overlaps"),
    ('[[namespaces]]\nname = "a"\nzone = "a.us-east-1.amazonaws.com"\n', "namespaces[0].zone", "overlaps"),
    ('[[namespaces]]\nname = "a"\n[[namespaces]]\nname = "b"\nzone = "x.a.lab.internal"\n', "namespaces[1].zone",
     "overlaps the lab's zone 'a.lab.internal'"),
    ('[[namespaces]]\nname = "a"\nzone = "no_dots"\n', "namespaces[0].zone", "not a valid DNS name"),
    ('[[namespaces]]\nname = "a"\nendpoint = "dynamodb.elsewhere.example"\n', "namespaces[0].endpoint",
     "not below the namespace's zone"),
    ('[[namespaces]]\nname = "a"\nendpoint = ""\n', "namespaces[0].endpoint", "not a non-empty string"),
    ('[[namespaces]]\nname = "a"\ntable_prefix = "a b"\n', "namespaces[0].table_prefix", "not a table name prefix"),
    ('[[namespaces]]\nname = "a"\n[[namespaces]]\nname = "b"\ntable_prefix = "a-"\n',
     "namespaces[1].table_prefix", "gives the plan table 'a-chaos-dynamo-plans' of namespace 'a'"),
    ('[[namespaces]]\nname = "a"\ncolour = "red"\n', "namespaces[0].colour", "is not a known setting"),
    ('namespaces = "a"\n', "namespaces", "must be an array of tables"),
])
def test_bad_namespaces_are_refused_naming_the_field(text: str, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        toml(text)
    assert caught.value.field == field and problem in caught.value.problem, str(caught.value)


@pytest.mark.parametrize("value", ["0", "65", "A,b", "a,a", "a,,b", ""])
def test_a_bad_namespaces_option_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="--namespaces"):
        namespaces_option(value)


def test_namespaces_option_and_file_namespaces_exclude_each_other(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(TWO, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"--namespaces: cannot be combined with the \[\[namespaces\]\]"):
        load_topology(path, namespaces="2")
    assert [ns.name for ns in load_topology(path).namespaces] == ["team-a", "team-b"]


# --- the view of one namespace ---------------------------------------------------------------


def _lb(name: str, address: str) -> dict[str, Any]:
    return {"name": name, "address": address, "weight": 100, "az": "use1-az1"}


def _info() -> LabInfo:
    ns = NamespaceInfo("team-a", "team-a.lab.internal", "ZA",
                       (EndpointInfo("dynamodb.team-a.lab.internal", "team-a.lab.internal", "ZA", False),),
                       "team-a-", "team-a-chaos-dynamo-plans", (_lb("team-a-lb-1", "127.0.0.17"),))
    other = NamespaceInfo("team-b", "team-b.lab.internal", "ZB",
                          (EndpointInfo("dynamodb.team-b.lab.internal", "team-b.lab.internal", "ZB", False),),
                          "team-b-", "team-b-chaos-dynamo-plans", (_lb("team-b-lb-1", "127.0.0.18"),))
    return LabInfo(pid=1, api_url="http://127.0.0.1:1", dns_host="127.0.0.1", dns_port=2, lb_port=3,
                   region="us-east-1", emulator_url="http://127.0.0.1:4", embedded=True, seed=0,
                   plan_table="chaos-dynamo-plans", record_ttl=5, propagation_delay=0.1, started_at=0.0,
                   zones={"us-east-1.amazonaws.com": "Z1"},
                   endpoints=(EndpointInfo("dynamodb.us-east-1.amazonaws.com", "us-east-1.amazonaws.com", "Z1",
                                           False),),
                   load_balancers=(_lb("lb-1", "127.0.0.11"),), namespaces=(ns, other))


def test_the_view_of_a_namespace_has_only_its_parts(tmp_path: Path) -> None:
    view = _info().scoped("team-a")
    assert view.namespace == "team-a" and view.table_prefix == "team-a-"
    assert [e.name for e in view.endpoints] == ["dynamodb.team-a.lab.internal"]
    assert view.zones == {"team-a.lab.internal": "ZA"} and view.plan_table == "team-a-chaos-dynamo-plans"
    assert view.scope_lbs == {"team-a-lb-1"} and _info().scope_lbs == {"lb-1"}
    assert view.in_scope("dynamodb.team-a.lab.internal.") and not view.in_scope("dynamodb.team-b.lab.internal")
    env = view.env()
    assert env["AWS_ENDPOINT_URL_DYNAMODB"] == "http://dynamodb.team-a.lab.internal:3"
    assert env["CHAOS_DYNAMO_ZONES"] == "team-a.lab.internal" and env["CHAOS_DYNAMO_ZONE_ID"] == "ZA"
    assert env["CHAOS_DYNAMO_NAMESPACE"] == "team-a" and env["CHAOS_DYNAMO_TABLE_PREFIX"] == "team-a-"
    assert "CHAOS_DYNAMO_NAMESPACE" not in _info().env()
    shell = {"CHAOS_DYNAMO_NAMESPACE": "team-b", "CHAOS_DYNAMO_TABLE_PREFIX": "team-b-", "CHAOS_DYNAMO_X": "1"}
    assert view.process_env(shell)["CHAOS_DYNAMO_NAMESPACE"] == "team-a"  # a process is in its view's namespace
    assert {k for k in _info().process_env(shell) if "NAMESPACE" in k or "PREFIX" in k} == set()
    assert _info().process_env(shell)["CHAOS_DYNAMO_X"] == "1"
    path = tmp_path / "lab.json"
    write_state(_info(), path)
    assert read_state(path) == _info() and read_state(path).scoped("team-b").plan_table == "team-b-chaos-dynamo-plans"


def test_an_unknown_namespace_lists_the_lab_s() -> None:
    with pytest.raises(ConfigError, match=r"chaos_dynamo_namespace: 'team-c' is not a namespace of the lab; "
                                          r"use one of \['team-a', 'team-b'\]"):
        _info().scoped("team-c")
    with pytest.raises(ConfigError, match="has no namespaces: start one with `chaos-dynamo lab up --namespaces"):
        LabInfo(**{**_info().__dict__, "namespaces": ()}).scoped("team-a")


def test_lab_info_takes_the_namespace_from_configuration_then_environment(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    path = tmp_path / "lab.json"
    write_state(_info(), path)
    monkeypatch.delenv("CHAOS_DYNAMO_API", raising=False)
    monkeypatch.setenv("CHAOS_DYNAMO_NAMESPACE", "team-b")
    state = {"chaos_dynamo_state": str(path)}
    assert _lab.lab_info(state).namespace == "team-b"
    assert _lab.lab_info(state | {"chaos_dynamo_namespace": "team-a"}).namespace == "team-a"
    assert _lab.lab_info(state | {"chaos_dynamo_namespace": ""}).namespace == ""  # the lab's own parts
    monkeypatch.delenv("CHAOS_DYNAMO_NAMESPACE")
    assert _lab.lab_info(state).namespace == ""
    with pytest.raises(ConfigError, match="chaos_dynamo_namespace: 3 is not a namespace name"):
        _lab.lab_info(state | {"chaos_dynamo_namespace": 3})


NAMESPACE_CASES: list[tuple[Any, dict[str, str], str]] = [
    # (the configuration's chaos_dynamo_namespace, or "absent"; the environment; the namespace or the error's field)
    ("team-a", {}, "team-a"),
    (" team-a ", {"CHAOS_DYNAMO_NAMESPACE": "team-b"}, "team-a"),
    ("", {"CHAOS_DYNAMO_NAMESPACE": "team-b"}, ""),
    (None, {"CHAOS_DYNAMO_NAMESPACE": "team-b"}, ""),
    ("absent", {"CHAOS_DYNAMO_NAMESPACE": "team-b"}, "team-b"),
    ("absent", {}, ""),
    ({"type": "env", "key": "MY_NS", "default": "team-b"}, {}, "team-b"),
    ({"type": "env", "key": "MY_NS", "default": "team-b"}, {"MY_NS": "team-c"}, "team-c"),
    ("Team A", {}, "error:chaos_dynamo_namespace"),
    (3, {}, "error:chaos_dynamo_namespace"),
    ({"type": "env", "key": "MY_NS"}, {"MY_NS": "no_underscores"}, "error:chaos_dynamo_namespace"),
    ("absent", {"CHAOS_DYNAMO_NAMESPACE": "Team B"}, "error:$CHAOS_DYNAMO_NAMESPACE"),
]


@pytest.mark.parametrize(("value", "environ", "expected"), NAMESPACE_CASES)
def test_activities_and_verify_find_the_namespace_by_the_same_rules(
        value: Any, environ: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One lookup (chaos_dynamo.lab.state.configured_namespace): an activity (namespace_of, its
    configuration) and verify (lab_namespace, the experiment file) agree on every input, the
    name's format and {"type": "env"} entries included; only verify's field says "configuration."."""
    for key in ("CHAOS_DYNAMO_NAMESPACE", "MY_NS"):
        monkeypatch.delenv(key, raising=False)
    for key, v in environ.items():
        monkeypatch.setenv(key, v)
    configuration = {} if value == "absent" else {"chaos_dynamo_namespace": value}
    lookups = [("", lambda: _lab.namespace_of(configuration)),
               ("configuration.", lambda: lab_namespace({"method": [], "configuration": configuration}, environ))]
    for where, lookup in lookups:
        if expected.startswith("error:"):
            with pytest.raises(ConfigError) as caught:
                lookup()
            field = expected.removeprefix("error:")
            assert caught.value.field == (field if field.startswith("$") else where + field)
        else:
            assert lookup() == expected


def test_the_namespace_names_are_defined_once() -> None:
    from chaos_dynamo.lab import state
    from chaos_dynamo.verify import checks, experiments

    assert (state.NAMESPACE_KEY, state.NAMESPACE_ENV) == ("chaos_dynamo_namespace", "CHAOS_DYNAMO_NAMESPACE")
    assert experiments.EXTENSION is checks.EXTENSION
    for module in (_lab, experiments, checks):
        source = Path(str(module.__file__)).read_text()
        assert "= \"chaos_dynamo_namespace\"" not in source and "= \"CHAOS_DYNAMO_NAMESPACE\"" not in source
    assert "EXTENSION = " not in Path(str(experiments.__file__)).read_text()


# --- what a namespace's view scopes ------------------------------------------------------------


@pytest.fixture
def lab_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """The lab's control API, faked: every call recorded, the lab found from the configuration."""
    calls: list[tuple[str, Any]] = []

    def http_json(url: str, body: Any = None, timeout: float = 10.0, *, configuration: Any = None) -> Any:
        calls.append((url.removeprefix("http://127.0.0.1:1/_chaos_dynamo/"), body))
        return {"service_time": 0.0} if url.endswith("capacity") else {}

    def lab_info(configuration: Any = None) -> LabInfo:
        return _lab.in_namespace(_info(), configuration)

    monkeypatch.setattr(_lab, "http_json", http_json)
    monkeypatch.setattr(_lab, "lab_info", lab_info)
    return calls


def test_lb_actions_reach_the_namespace_s_load_balancers_only(lab_calls: list[tuple[str, Any]]) -> None:
    from chaos_dynamo.lbfleet import actions

    a = {"chaos_dynamo_namespace": "team-a"}
    actions.reset_lb_faults(configuration=a)
    actions.close_connections(configuration=a)
    actions.throttle_dynamodb(0.5, configuration=a)
    actions.set_lb_faults("team-a-lb-1", down=True, configuration=a)
    assert lab_calls == [("lb/faults/reset", {"lbs": ["team-a-lb-1"]}),
                         ("lb/connections/close", {"lbs": ["team-a-lb-1"]}),
                         ("lb/team-a-lb-1/faults", {"error_rate": 0.5,
                                                     "error_code": "ProvisionedThroughputExceededException"}),
                         ("lb/team-a-lb-1/faults", {"down": True})]
    lab_calls.clear()
    actions.reset_lb_faults(configuration={})  # the lab's own: its LBs, and the capacity it owns
    assert lab_calls == [("lb/faults/reset", {"lbs": ["lb-1"], "capacity": True})]


@pytest.mark.parametrize(("lb", "why"), [("team-b-lb-1", "it belongs to namespace 'team-b'"),
                                         ("lb-1", "the lab has no load balancer of that name"),
                                         ("lb-99", "the lab has no load balancer of that name")])
def test_an_lb_outside_the_namespace_is_refused_by_name(lab_calls: list[tuple[str, Any]], lb: str, why: str) -> None:
    from chaos_dynamo.lbfleet import actions

    a = {"chaos_dynamo_namespace": "team-a"}
    with pytest.raises(ConfigError, match=rf"lb: '{lb}' is not a load balancer of namespace 'team-a' \({why}\)"):
        actions.set_lb_faults(lb, down=True, configuration=a)
    with pytest.raises(ConfigError, match=rf"lb: '{lb}' is not a load balancer of namespace 'team-a'"):
        actions.throttle_dynamodb(1.0, lb=lb, configuration=a)
    assert lab_calls == []


def test_without_a_namespace_the_namespaces_load_balancers_are_refused(lab_calls: list[tuple[str, Any]]) -> None:
    from chaos_dynamo.lbfleet import actions

    with pytest.raises(ConfigError, match=r"lb: 'team-b-lb-1' is not a load balancer of the lab's own endpoints "
                                          r"\(it belongs to namespace 'team-b'\)"):
        actions.set_lb_faults("team-b-lb-1", down=True, configuration={})
    assert lab_calls == []


def test_lab_wide_knobs_are_refused_in_a_namespace(lab_calls: list[tuple[str, Any]]) -> None:
    from chaos_dynamo.control import _client
    from chaos_dynamo.lbfleet import actions

    a = {"chaos_dynamo_namespace": "team-a"}
    for call in (lambda: actions.set_dynamodb_capacity(2, configuration=a),
                 lambda: actions.reset_dynamodb_capacity(configuration=a),
                 lambda: actions.slow_dynamodb_for(1.0, 0.1, configuration=a)):
        with pytest.raises(ConfigError, match="chaos_dynamo_namespace: .* DynamoDB's capacity, which every namespace"):
            call()
    with pytest.raises(ConfigError, match="chaos_dynamo_namespace: the DNS control plane is the whole lab's"):
        _client.call("race", {"design": "naive"}, configuration=a)
    assert lab_calls == []


def test_the_counting_probes_read_the_namespace_s_traffic_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from chaos_dynamo.retry import probes

    lb_log = [{"time": 1.0, "lb": lb, "client": "127.0.0.1", "user_agent": f"Boto3 app/{app}"}
              for lb, app in [("team-a-lb-1", "drive"), ("team-b-lb-1", "drive"), ("team-b-lb-1", "drive"),
                              ("lb-1", "drive"), ("team-a-lb-1", "other")]]
    dns_log = [{"time": 1.0, "client": "127.0.0.1", "name": name, "qtype": "A", "rcode": "NOERROR", "answers": 1}
               for name in ["dynamodb.team-a.lab.internal.", "dynamodb.team-b.lab.internal.",
                            "dynamodb.us-east-1.amazonaws.com."]]
    monkeypatch.setattr(_lab, "http_json", lambda url, *a, **k: lb_log if "/lb/log" in url else dns_log)
    monkeypatch.setattr(_lab, "lab_info", lambda configuration=None: _lab.in_namespace(_info(), configuration))
    monkeypatch.setattr(probes.registry, "list_records", lambda state=None: [])
    count = probes.lb_request_count
    assert count("drive", configuration={"chaos_dynamo_namespace": "team-a"}) == 1
    assert count("drive", configuration={"chaos_dynamo_namespace": "team-b"}) == 2
    assert count("", configuration={"chaos_dynamo_namespace": "team-a"}) == 2
    assert count("drive", configuration={}) == 1  # the lab's own load balancers
    assert [q.name for q in probes.HttpLab(_info().scoped("team-b")).dns_log(0.0)] == ["dynamodb.team-b.lab.internal."]
    assert probes.dns_query_count(configuration={"chaos_dynamo_namespace": "team-a"}) == 1


# --- verify: a namespace is a scope -------------------------------------------------------------


def _experiment(namespace: Any = None, declared: list[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"method": []}
    if namespace is not None:
        data["configuration"] = {"chaos_dynamo_namespace": namespace}
    if declared is not None:
        data["extensions"] = [{"name": "chaos-dynamo", "namespaces": declared}]
    return data


def test_an_experiment_in_a_namespace_has_it_as_its_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAOS_DYNAMO_NAMESPACE", raising=False)
    assert scope(_experiment("team-a")) == {"namespace:team-a"}
    assert scope(_experiment("team-a", ["leases"])) == {"namespace:team-a", "leases"}
    assert scope(_experiment()) is None and scope(_experiment("")) is None
    env_entry = {"type": "env", "key": "MY_NS", "default": "team-b"}
    assert lab_namespace(_experiment(env_entry), {}) == "team-b"
    assert lab_namespace(_experiment(env_entry), {"MY_NS": "team-c"}) == "team-c"
    assert lab_namespace(_experiment(), {"CHAOS_DYNAMO_NAMESPACE": "team-d"}) == "team-d"
    assert lab_namespace(_experiment(""), {"CHAOS_DYNAMO_NAMESPACE": "team-d"}) == ""
    for bad, field in ((3, "configuration.chaos_dynamo_namespace"), ("Team A", "configuration.chaos_dynamo_namespace")):
        with pytest.raises(ConfigError) as caught:
            lab_namespace(_experiment(bad), {})
        assert caught.value.field == field


def test_different_namespaces_run_together_the_same_never(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAOS_DYNAMO_NAMESPACE", raising=False)
    scopes = [scope(_experiment(n)) for n in ("team-a", "team-b", "team-a", "team-b")]
    assert batches(scopes, 4) == [[0, 1], [2, 3]]
    assert batches([scope(_experiment("team-a")), scope(_experiment(None, ["observe"]))], 2) == [[0, 1]]


def test_inspect_reads_the_namespace_of_an_experiment_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chaos_dynamo.verify.experiments import inspect

    monkeypatch.delenv("CHAOS_DYNAMO_NAMESPACE", raising=False)
    path = tmp_path / "e.json"
    path.write_text(json.dumps({"title": "t", "description": "d", "configuration": {"chaos_dynamo_namespace": "team-a"},
                                "method": [{"type": "probe", "name": "p", "provider": {
                                    "type": "python", "module": "chaos_dynamo.endpoint.probes",
                                    "func": "endpoint_answer", "arguments": {}}}]}))
    spec = inspect(path)
    assert spec.namespace == "team-a" and spec.namespaces == {"namespace:team-a"}


def test_lab_up_refuses_a_bad_namespaces_option_before_anything_starts(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from chaos_dynamo.cli import main

    result = CliRunner().invoke(main, ["lab", "up", "--namespaces", "Team A", "--state-file", str(tmp_path / "s.json")])
    assert result.exit_code == 2 and "--namespaces: 'Team A' is not a namespace name" in result.output
    assert not (tmp_path / "s.json").exists()
