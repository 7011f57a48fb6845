"""Health probes against a real HTTP server on 127.0.0.1 serving /health and /metrics."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.clock import FakeClock
from chaos_dynamo.errors import ConfigError, LabError, SafetyError
from chaos_dynamo.health import probes
from chaos_dynamo.lab.state import EndpointInfo, LabInfo, write_state
from chaos_dynamo.services import registry

ROOT = Path(__file__).resolve().parents[2]
EP = "dynamodb.us-east-1.amazonaws.com"

METRICS = """\
# HELP requests_total Logical calls by outcome.
# TYPE requests_total counter
requests_total{outcome="ok",op="GetItem"} 120
requests_total{outcome="error",op="GetItem"} 7
requests_total{ outcome = "error" , op="PutItem", } 3 1700000000000
# a free comment
latency_seconds_bucket{le="0.1"} 90
latency_seconds_bucket{le="+Inf"} 127
latency_seconds_sum 4.5
queue_depth 12
weird{path="C:\\\\tmp\\"x\\"\\nnext"} +Inf
not_a_number NaN
garbage line here
"""


class Service:
    """A fake service: /health answers ``self.status`` (or 200 after ``healthy_after`` polls)."""

    def __init__(self, metrics: str = METRICS) -> None:
        self.status = 200
        self.healthy_after: int | None = None
        self.health_calls = 0
        self.metrics = metrics
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/health":
                    owner.health_calls += 1
                    status = owner.status
                    if owner.healthy_after is not None:
                        status = 200 if owner.health_calls >= owner.healthy_after else 503
                    body = json.dumps({"healthy": status == 200}).encode()
                elif self.path == "/metrics":
                    status, body = 200, owner.metrics.encode()
                else:
                    status, body = 404, b"no"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def svc() -> Iterator[Service]:
    service = Service()
    yield service
    service.close()


@pytest.fixture
def svc2() -> Iterator[Service]:
    service = Service(metrics='requests_total{outcome="error",op="GetItem"} 5\nqueue_depth 30\n')
    yield service
    service.close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "lab.json"
    write_state(LabInfo(pid=1, api_url="http://127.0.0.1:1", dns_host="127.0.0.1", dns_port=1, lb_port=1,
                        region="us-east-1", emulator_url="http://127.0.0.1:2", embedded=True, seed=1,
                        plan_table="t", record_ttl=1, propagation_delay=0.0, started_at=900.0,
                        endpoints=(EndpointInfo(EP, "us-east-1.amazonaws.com", "Z1", False),)), path)
    return path


def recorded(state: Path, *services: Service, started_at: float = 950.0) -> dict[str, Any]:
    instances = tuple(registry.Instance(i, 1000 + i, f"{s.base}/health", f"{s.base}/metrics")
                      for i, s in enumerate(services))
    registry.write_record(registry.ServiceRecord("shop", "hardened", ("python",), "127.0.0.101", instances,
                                                 started_at), state)
    return {"chaos_dynamo_state": str(state)}


def closed_port() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/health"


# --- health -------------------------------------------------------------------------------


def test_http_status_and_health(svc: Service) -> None:
    assert probes.http_status(f"{svc.base}/health") == 200 and probes.http_health(f"{svc.base}/health")
    svc.status = 503
    assert probes.http_status(f"{svc.base}/health") == 503 and not probes.http_health(f"{svc.base}/health")
    assert probes.http_status(f"{svc.base}/nope") == 404
    assert probes.http_status(closed_port()) == 0 and not probes.http_health(closed_port())


def test_health_of_a_service_needs_every_instance(svc: Service, svc2: Service, state: Path) -> None:
    config = recorded(state, svc, svc2)
    assert probes.http_health(service="shop", configuration=config)
    svc2.status = 500
    assert not probes.http_health(service="shop", configuration=config)


def test_only_loopback_urls_are_read() -> None:
    for url in ("http://10.0.0.1/health", "http://example.com/health", "http://[::ffff:8.8.8.8]/x"):
        with pytest.raises(SafetyError, match="^url: refusing to read"):
            probes.http_status(url)
    with pytest.raises(ConfigError, match="^url: 'ftp://127.0.0.1/x' is not an http"):
        probes.http_health("ftp://127.0.0.1/x")
    with pytest.raises(ConfigError, match="^url: neither url nor service"):
        probes.http_health()


def test_an_unrecorded_service_says_how_to_record_it(state: Path) -> None:
    with pytest.raises(ConfigError, match="^service: 'ghost' is not a recorded service.*service start"):
        probes.http_health(service="ghost", configuration={"chaos_dynamo_state": str(state)})


# --- Prometheus -------------------------------------------------------------------------------


def test_parse_prometheus_text_format() -> None:
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in probes.parse_prometheus(METRICS)}
    assert samples[("requests_total", (("op", "PutItem"), ("outcome", "error")))] == 3
    assert samples[("latency_seconds_bucket", (("le", "+Inf"),))] == 127
    assert samples[("weird", (("path", 'C:\\tmp"x"\nnext'),))] == math.inf
    assert math.isnan(samples[("not_a_number", ())])
    assert len(samples) == 9  # comments and the garbage line are skipped


def test_prometheus_metric_with_labels_and_aggregates(svc: Service) -> None:
    url = f"{svc.base}/metrics"
    assert probes.prometheus_metric("requests_total", url) == 130
    assert probes.prometheus_metric("requests_total", url, labels={"outcome": "error"}) == 10
    assert probes.prometheus_metric("requests_total", url, labels={"outcome": "error"}, aggregate="max") == 7
    assert probes.prometheus_metric("requests_total", url, aggregate="count") == 3
    assert probes.prometheus_metric("latency_seconds_bucket", url, labels={"le": "+Inf"}) == 127


def test_prometheus_metric_sums_across_instances(svc: Service, svc2: Service, state: Path) -> None:
    config = recorded(state, svc, svc2)
    assert probes.prometheus_metric("requests_total", service="shop", labels={"outcome": "error"},
                                    configuration=config) == 15
    assert probes.prometheus_metric("queue_depth", service="shop", aggregate="max", configuration=config) == 30


def test_a_missing_metric_is_named_with_close_names(svc: Service) -> None:
    with pytest.raises(LabError, match=r"no metric 'request_total' in .*close names: \['requests_total'\]"):
        probes.prometheus_metric("request_total", f"{svc.base}/metrics")
    with pytest.raises(LabError, match=r"has no sample with labels \{'outcome': 'timeout'\}; label sets"):
        probes.prometheus_metric("requests_total", f"{svc.base}/metrics", labels={"outcome": "timeout"})
    with pytest.raises(ConfigError, match="^aggregate: 'avg'"):
        probes.prometheus_metric("requests_total", f"{svc.base}/metrics", aggregate="avg")
    with pytest.raises(LabError, match="answered 404"):
        probes.prometheus_metric("x", f"{svc.base}/elsewhere")


# --- seconds to healthy ----------------------------------------------------------------------------

TIMELINE = [{"time": 0.0, "endpoint": EP, "addresses": 3}, {"time": 990.0, "endpoint": EP, "addresses": 0},
            {"time": 999.0, "endpoint": EP, "addresses": 3}]


def test_seconds_to_healthy_counts_from_the_restore(svc: Service, state: Path) -> None:
    svc.healthy_after = 3  # the third poll is healthy: 0.4 s after the probe starts
    clock = FakeClock(start=1000.0)
    seconds, healthy = probes.measure_time_to_healthy(f"{svc.base}/health", "", "", 10.0,
                                                      {"chaos_dynamo_state": str(state)},
                                                      timeline=TIMELINE, clock=clock)
    assert healthy and seconds == pytest.approx(1.4)


def test_seconds_to_healthy_never_healthy_returns_the_seconds_waited(svc: Service, state: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    svc.status = 503
    clock = FakeClock(start=1000.0)
    seconds, healthy = probes.measure_time_to_healthy(f"{svc.base}/health", "", "", 2.0,
                                                      {"chaos_dynamo_state": str(state)},
                                                      timeline=TIMELINE, clock=clock)
    assert not healthy and seconds == pytest.approx(3.2)
    assert "still not healthy" in caplog.text


def test_seconds_to_healthy_without_an_outage_counts_from_now(svc: Service, state: Path) -> None:
    for timeline in (TIMELINE[:1], TIMELINE[:2]):  # no outage; one still going on
        seconds, healthy = probes.measure_time_to_healthy(f"{svc.base}/health", "", "", 2.0,
                                                          {"chaos_dynamo_state": str(state)},
                                                          timeline=timeline, clock=FakeClock(start=1000.0))
        assert healthy and seconds == 0.0


def test_seconds_to_healthy_ignores_an_outage_over_before_the_service_started(svc: Service, state: Path) -> None:
    """The steady-state check of a second experiment on one lab: the first one's outage is
    not this service's to recover from."""
    for started_at, expected in ((1005.0, 0.0), (950.0, 1.0)):
        config = recorded(state, svc, started_at=started_at)
        seconds, healthy = probes.measure_time_to_healthy("", "shop", "", 2.0, config, timeline=TIMELINE,
                                                          clock=FakeClock(start=1000.0))
        assert healthy and seconds == pytest.approx(expected)


# --- probes/health -------------------------------------------------------------------------------------


def run(*args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, str(ROOT / "probes" / "health"), *args], capture_output=True,
                          text=True, timeout=60)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout + done.stderr
    return done.returncode, json.loads(lines[0])


def test_probes_health_executable(svc: Service) -> None:
    code, verdict = run("--url", f"{svc.base}/health")
    assert code == 0 and verdict["ok"] and verdict["statuses"] == {f"{svc.base}/health": 200}
    code, verdict = run("--url", f"{svc.base}/metrics", "--metric", "requests_total", "--label", "outcome=error",
                        "--at-most", "5")
    assert code == 1 and verdict["value"] == 10 and not verdict["ok"]
    code, verdict = run("--url", "http://10.1.2.3/health")
    assert code == 2 and verdict["error"].startswith("SafetyError: url: refusing")
    code, verdict = run("--metric", "x")
    assert code == 2 and "usage:" in verdict["error"]


def test_probes_health_seconds_to_healthy_without_a_lab_is_a_lab_error(svc: Service, state: Path) -> None:
    code, verdict = run("--url", f"{svc.base}/health", "--state", str(state), "--seconds-to-healthy")
    assert code == 2 and verdict["error"].startswith("LabError: lab API http://127.0.0.1:1/")
