"""The reference services as real processes against the session's lab.

All five kinds run at once (which also exercises concurrent table creation), each must
become healthy, count successful calls, show up in the LB log under its SDK app id and
exit 0 quickly on SIGTERM. The endpoint is never emptied here.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.clock import wait_until
from chaos_dynamo.lab.lab import Lab
from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.services.reference import KINDS
from tests.conftest import BIN, ROOT, prometheus_samples
from tests.conftest import http_get as get

pytestmark = pytest.mark.integration

OK_CALLS = 'chaos_dynamo_service_calls_total{outcome="ok"}'


@dataclass
class Service:
    kind: str
    app: str
    process: subprocess.Popen[bytes]
    ready_file: Path
    output: Path

    def ready(self) -> dict[str, Any]:
        return dict(json.loads(self.ready_file.read_text()))

    def log(self) -> str:
        return self.output.read_text(errors="replace")


def start(kind: str, env: dict[str, str], tmp_path: Path, *args: str) -> Service:
    app = f"ref-{kind}-{uuid.uuid4().hex[:8]}"
    ready = tmp_path / f"{kind}-ready.json"
    output = tmp_path / f"{kind}.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "python"), "-m", "chaos_dynamo.services.reference", "--kind", kind,
             "--ready-file", str(ready), *args],
            env=env | {"AWS_SDK_UA_APP_ID": app}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    return Service(kind, app, process, ready, output)


def samples(text: str) -> dict[str, float]:
    """Prometheus text -> {name{labels}: value}; every sample's metric must be declared."""
    return prometheus_samples(text, ("counter", "gauge", "summary"))


def test_every_kind_serves_health_and_metrics_reaches_the_lab_and_stops_cleanly(
        lab: Lab, lab_env: dict[str, str], tmp_path: Path) -> None:
    assert lab.fleet is not None
    since = time.time()
    services = [start(kind, lab_env, tmp_path, "--rate", "5", "--concurrency", "4",
                      "--seed", str(n)) for n, kind in enumerate(KINDS)]
    try:
        for s in services:
            assert wait_until(lambda s=s: s.ready_file.exists() or s.process.poll() is not None,
                              timeout=45, interval=0.05), f"{s.kind}: no ready file\n{s.log()}"
            assert s.process.poll() is None, f"{s.kind} exited {s.process.returncode}\n{s.log()}"
            ready = s.ready()
            assert ready["pid"] == s.process.pid and ready["kind"] == s.kind
            assert ready["health_url"].startswith("http://127.0.0.1:")

        for s in services:
            health_url = s.ready()["health_url"]
            assert wait_until(lambda u=health_url: get(u)[0] == 200, timeout=20, interval=0.1), \
                f"{s.kind} never healthy: {get(health_url)}\n{s.log()}"
            body = json.loads(get(health_url)[1])
            assert body["healthy"] is True and body["kind"] == s.kind and body["ok"] >= 1

        first = {s.kind: samples(get(s.ready()["metrics_url"])[1]) for s in services}
        for s in services:
            url = s.ready()["metrics_url"]
            assert wait_until(lambda u=url, k=s.kind: samples(get(u)[1])[OK_CALLS] > first[k][OK_CALLS],
                              timeout=10, interval=0.1), f"{s.kind}: ok calls do not grow"
            m = samples(get(url)[1])
            assert m["chaos_dynamo_service_attempts_total"] >= m[OK_CALLS] > 0
            assert m["chaos_dynamo_service_call_seconds_count"] >= m[OK_CALLS]
            assert m["chaos_dynamo_service_breaker_open"] == 0

        agents = [r.user_agent for r in lab.fleet.request_log(since=since)]
        for s in services:
            mine = [ua for ua in agents if f"app/{s.app}" in ua]
            assert mine, f"{s.kind}: no LB request with app/{s.app} in its User-Agent"

        for s in services:
            s.process.send_signal(signal.SIGTERM)
        for s in services:
            began = time.monotonic()
            assert s.process.wait(timeout=10) == 0, f"{s.kind}\n{s.log()}"
            assert time.monotonic() - began < 8, f"{s.kind} took too long to stop"
            assert not s.ready_file.exists()  # removed on a clean exit
            lines = s.log().splitlines()
            assert lines and lines[0].startswith(f"reference {s.kind} pid={s.process.pid}")
            assert "Traceback" not in s.log() and "error:" not in s.log(), s.log()
    finally:
        for s in services:
            if s.process.poll() is None:
                s.process.kill()
                s.process.wait()


def test_duration_ends_the_run_by_itself(lab_env: dict[str, str], tmp_path: Path) -> None:
    service = start("hardened", lab_env, tmp_path, "--rate", "20", "--duration", "1")
    try:
        assert service.process.wait(timeout=30) == 0, service.log()
    finally:
        if service.process.poll() is None:
            service.process.kill()
    assert "reference hardened" in service.log()


def test_a_non_loopback_http_address_is_refused(lab_env: dict[str, str]) -> None:
    result = subprocess.run([str(BIN / "python"), "-m", "chaos_dynamo.services.reference",
                             "--kind", "naive", "--http", "0.0.0.0:8080"],
                            env=lab_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "argument --http: '0.0.0.0' is not an IPv4 loopback address" in result.stderr


def test_without_the_lab_endpoint_it_refuses_to_start(lab_env: dict[str, str]) -> None:
    env = {k: v for k, v in lab_env.items() if not k.startswith("AWS_ENDPOINT_URL")}
    result = subprocess.run([str(BIN / "python"), "-m", "chaos_dynamo.services.reference",
                             "--kind", "standard"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "AWS_ENDPOINT_URL_DYNAMODB is not set" in result.stderr


def test_a_lab_it_cannot_reach_is_a_clear_error_after_the_setup_timeout(
        lab_info: LabInfo, lab_env: dict[str, str], tmp_path: Path) -> None:
    # A lab name that does not resolve (as in an outage), without touching the real endpoint.
    zone = lab_env["CHAOS_DYNAMO_ZONES"].split(",")[0]
    url = f"http://no-such-endpoint.{zone}:{lab_info.lb_port}"
    began = time.monotonic()
    result = subprocess.run([str(BIN / "python"), "-m", "chaos_dynamo.services.reference",
                             "--kind", "hardened", "--setup-timeout", "1.5"],
                            env=lab_env | {"AWS_ENDPOINT_URL_DYNAMODB": url}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "could not create table chaos-dynamo-reference in 1.5 s" in result.stderr
    assert "Could not connect to the endpoint URL" in result.stderr
    assert time.monotonic() - began < 30
