"""The lab sidecar built from synthetic lab logs: states at the span's start, change points,
rates per bucket, bounded sizes, and routes the lab could not answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.report import collect
from chaos_dynamo.report.collect import MAX_POINTS, MAX_SERIES, Buckets, LabLogs, build_timeline

T = 1_700_000_000.0
EP = "dynamodb.us-east-1.amazonaws.com"
LAB = {"api_url": "http://127.0.0.1:1", "region": "us-east-1", "endpoints": [EP, "other.example"],
       "load_balancers": ["lb-1"]}


def query(t: float, answers: int, qtype: str = "A", client: str = "127.0.0.1", name: str = EP + ".") -> dict[str, Any]:
    return {"time": t, "client": client, "client_port": 5000, "name": name, "qtype": qtype, "rcode": "NOERROR",
            "answers": answers, "transport": "udp"}


def request(t: float, status: int = 200, client: str = "127.0.0.1", ua: str = "Boto3/1", service: str = "",
            operation: str = "GetItem") -> dict[str, Any]:
    return {"time": t, "lb": "lb-1", "client": client, "client_port": 1, "operation": operation, "status": status,
            "latency": 0.01, "user_agent": ua, "service": service}


def build(logs: LabLogs, since: float = T, until: float = T + 10, services: dict[str, str] | None = None) -> dict[str, Any]:
    return build_timeline(logs, lab=LAB, since=since, until=until, services=services or {})


def test_the_endpoint_state_at_the_start_then_each_change_inside_the_span() -> None:
    availability = [{"time": T - 100, "endpoint": EP, "addresses": 6}, {"time": T + 2, "endpoint": EP, "addresses": 0},
                    {"time": T + 5, "endpoint": EP, "addresses": 6}, {"time": T + 50, "endpoint": EP, "addresses": 0}]
    sidecar = build(LabLogs(availability=availability))
    assert sidecar["version"] == 1
    assert sidecar["endpoints"][EP]["addresses"] == [
        {"time": T, "addresses": 6}, {"time": T + 2, "addresses": 0}, {"time": T + 5, "addresses": 6}]


def test_queries_become_change_points_per_type_with_their_counts() -> None:
    dns = [query(T + 1, 1), query(T + 1.5, 1), query(T + 1.6, 0, "AAAA"), query(T + 2, 0), query(T + 3, 0),
           query(T + 4, 1), query(T + 4.5, 1, name="elsewhere.example."), query(T + 11, 0)]
    points = build(LabLogs(dns=dns))["endpoints"][EP]["queries"]
    assert [(p["qtype"], p["answers"], p["queries"], p["time"], p["last"]) for p in points] == [
        ("A", 1, 2, T + 1, T + 1.5), ("AAAA", 0, 1, T + 1.6, T + 1.6), ("A", 0, 2, T + 2, T + 3),
        ("A", 1, 1, T + 4, T + 4)]


def test_rates_count_per_second_by_service_operation_and_error() -> None:
    dns = [query(T + 0.2, 1, client="127.0.0.100"), query(T + 0.7, 1, client="127.0.0.100"),
           query(T + 3.1, 1, client="127.0.0.9")]
    lb = [request(T + 0.5, ua="Boto3/1 app/checkout"), request(T + 1.5, service="billing", operation="PutItem"),
          request(T + 1.6, status=503, client="127.0.0.100"), request(T + 9.9, status=0)]
    rates = build(LabLogs(dns=dns, lb=lb), services={"127.0.0.100": "leases"})["rates"]
    assert rates["bucket_seconds"] == 1.0 and rates["buckets"] == 10
    assert rates["dns_queries"]["leases"][:4] == [2, 0, 0, 0]
    assert rates["dns_queries"]["127.0.0.9"][3] == 1
    assert rates["lb_requests"]["checkout"][0] == 1
    assert rates["lb_requests"]["billing"][1] == 1
    assert rates["lb_requests"]["leases"][1] == 1
    assert rates["lb_operations"]["PutItem"] == [0, 1] + [0] * 8
    assert rates["lb_errors"] == {"503": [0, 1] + [0] * 8, "dropped": [0] * 9 + [1]}


def test_long_spans_get_wider_buckets_and_the_busiest_series_are_kept() -> None:
    assert Buckets.over(T, T + 7200).width == 4.0
    dns = [query(T + 1, 1, client=f"127.0.1.{i}") for i in range(MAX_SERIES + 3) for _ in range(i + 1)]
    series = build(LabLogs(dns=dns))["rates"]["dns_queries"]
    assert len(series) == MAX_SERIES + 1
    assert series["other"][1] == 1 + 2 + 3  # the three quietest clients
    assert "127.0.1.0" not in series


def test_change_points_are_bounded() -> None:
    dns = [query(T + i / 10_000, i % 2) for i in range(3 * MAX_POINTS)]
    sidecar = build(LabLogs(dns=dns))
    assert len(sidecar["endpoints"][EP]["queries"]) == MAX_POINTS
    assert sidecar["dropped"] == {f"endpoints.{EP}.queries": 2 * MAX_POINTS}


def test_the_generation_in_effect_at_the_start_comes_first() -> None:
    changes = [{"time": T - 5, "endpoint": EP, "from": 1, "to": 3, "actor": "enactor-a", "backwards": False},
               {"time": T + 2, "endpoint": EP, "from": 3, "to": 2, "actor": "enactor-b", "backwards": True}]
    points = build(LabLogs(generations=changes))["endpoints"][EP]["generations"]
    assert [(p["time"], p["generation"], p["backwards"]) for p in points] == [(T, 3, False), (T + 2, 2, True)]
    only_later = build(LabLogs(generations=changes[1:]))["endpoints"][EP]["generations"]
    assert only_later[0] == {"time": T, "generation": 3, "actor": "", "backwards": False}
    assert "generations" not in build(LabLogs(generations=[]))["endpoints"][EP]


def test_health_checks_unhealthy_at_the_start_and_their_transitions() -> None:
    log = [{"time": T - 3, "id": "a", "healthy": False, "reason": "x"}, {"time": T - 2, "id": "b", "healthy": False},
           {"time": T - 1, "id": "b", "healthy": True}, {"time": T + 1, "id": "a", "healthy": True, "reason": "ok"}]
    health = build(LabLogs(health=log))["health"]
    assert health["unhealthy_at_since"] == ["a"]
    assert health["transitions"] == [{"time": T + 1, "id": "a", "healthy": True, "reason": "ok"}]


def test_a_series_the_lab_could_not_give_is_left_out_and_named() -> None:
    sidecar = build(LabLogs(missing=["control/generations", "dns/log"]))
    assert sidecar["missing"] == ["control/generations", "dns/log"]
    assert "dns_queries" not in sidecar["rates"] and "health" not in sidecar
    assert sidecar["endpoints"][EP] == {}


def test_until_before_since_is_refused(tmp_path: Path) -> None:
    from chaos_dynamo.errors import ConfigError
    from chaos_dynamo.lab.state import LabInfo

    info = LabInfo(1, "http://127.0.0.1:9", "127.0.0.1", 53, 80, "us-east-1", "", True, 0, "p", 60, 0.2, T)
    with pytest.raises(ConfigError, match="until"):
        collect.write_lab_timeline(info, since=T, until=T - 1, path=tmp_path / "x.lab.json")
    assert not (tmp_path / "x.lab.json").exists()


def test_written_atomically_and_readable_by_others(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "run.lab.json"
    collect.write_text_atomically(out, json.dumps({"version": 1}))
    collect.write_text_atomically(out, json.dumps({"version": 1, "again": True}))
    assert json.loads(out.read_text()) == {"version": 1, "again": True}
    assert [p.name for p in out.parent.iterdir()] == ["run.lab.json"]
    assert out.stat().st_mode & 0o777 == 0o644
