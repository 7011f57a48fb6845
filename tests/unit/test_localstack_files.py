"""The files in localstack/: loopback-only ports, no secrets in the repository, a hook that
parses and agrees with the lab's defaults."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo.config import default_topology

yaml = pytest.importorskip("yaml")  # PyYAML comes with chaostoolkit

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "localstack"
COMPOSE_FILES = [FOLDER / "docker-compose.yml", FOLDER / "docker-compose.ministack.yml"]
HOOK = FOLDER / "init" / "ready.d" / "10-chaos-dynamo.sh"


def services(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc.get("services"), dict) and doc["services"], f"{path.name} has no services"
    return dict(doc["services"])


def host_ip(port: Any) -> str:
    """The host address a compose port entry publishes on ('' means every interface)."""
    if isinstance(port, dict):  # long syntax
        return str(port.get("host_ip", ""))
    parts = str(port).rsplit("/", 1)[0].split(":")
    return ":".join(parts[:-2]) if len(parts) >= 3 else ""


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_published_port_is_on_loopback(path: Path) -> None:
    for name, service in services(path).items():
        assert service.get("network_mode") != "host", f"{name}: host networking publishes everything"
        ports = service.get("ports", [])
        assert ports, f"{name} publishes no port; the lab needs the gateway"
        for port in ports:
            assert host_ip(port) == "127.0.0.1", f"{path.name}: {name} publishes {port!r} beyond loopback"


def test_host_ip_reads_both_port_syntaxes() -> None:
    assert host_ip("127.0.0.1:4566:4566") == "127.0.0.1"
    assert host_ip("4566:4566") == "" and host_ip("4566") == "" and host_ip("0.0.0.0:53:53/udp") == "0.0.0.0"
    assert host_ip({"target": 4566, "published": 4566, "host_ip": "127.0.0.1"}) == "127.0.0.1"


def test_localstack_auth_token_comes_from_the_environment() -> None:
    env = services(FOLDER / "docker-compose.yml")["localstack"]["environment"]
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    token = env.get("LOCALSTACK_AUTH_TOKEN")
    assert token is None or re.fullmatch(r"\$\{LOCALSTACK_AUTH_TOKEN(:?[?-][^}]*)?\}", str(token)), (
        f"LOCALSTACK_AUTH_TOKEN must be interpolated from the environment, not written here: {token!r}")
    assert set(env["SERVICES"].split(",")) >= {"route53", "dynamodb", "sts"}


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_the_init_hook_is_mounted_where_localstack_reads_it(path: Path) -> None:
    for service in services(path).values():
        mounts = [str(v) for v in service.get("volumes", [])]
        assert any(m.startswith("./init/ready.d:/etc/localstack/init/ready.d") for m in mounts), mounts
        source = path.parent / "init" / "ready.d"
        assert source.is_dir()


def test_the_init_hook_parses_and_is_executable() -> None:
    result = subprocess.run(["bash", "-n", str(HOOK)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert os.access(HOOK, os.X_OK), "LocalStack runs ready.d scripts only when they are executable"


def test_the_init_hook_creates_what_the_lab_expects() -> None:
    text = HOOK.read_text(encoding="utf-8")
    topology = default_topology(region="us-east-1")
    assert f"${{CHAOS_DYNAMO_PLAN_TABLE:-{topology.plan_table}}}" in text
    for zone in topology.zones:
        assert f'"{zone.replace("us-east-1", "${region}")}"' in text, zone
    assert "awslocal" in text
