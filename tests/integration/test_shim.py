"""The getaddrinfo shim, switched on by the environment in a fresh Python process."""

from __future__ import annotations

import os
import socket
import subprocess
from typing import Any

import pytest

from chaos_dynamo import shim
from chaos_dynamo.lab.state import LabInfo
from tests.conftest import BIN

pytestmark = pytest.mark.integration

RESOLVE = (
    "import socket, sys\n"
    "try:\n"
    "    print(socket.getaddrinfo(sys.argv[1], 80, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])\n"
    "except socket.gaierror as exc:\n"
    "    print('gaierror', exc.errno)\n"
)


def python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "python"), "-c", code, *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_lab_names_resolve_through_the_lab_dns(lab_info: LabInfo, lab_env: dict[str, str]) -> None:
    result = python(RESOLVE, "dynamodb.us-east-1.amazonaws.com", env=lab_env)
    assert result.stdout.strip() in {lb["address"] for lb in lab_info.load_balancers}, result.stderr
    missing = python(RESOLVE, "no-such-name.us-east-1.amazonaws.com", env=lab_env)
    assert missing.stdout.strip() == "gaierror -2"  # EAI_NONAME, as glibc says for NXDOMAIN


def test_other_names_are_left_to_the_system_resolver(lab_env: dict[str, str]) -> None:
    result = python(RESOLVE, "localhost", env=lab_env)
    assert result.stdout.strip() == "127.0.0.1"


def test_without_the_variable_nothing_changes(lab_env: dict[str, str]) -> None:
    env = {k: v for k, v in lab_env.items() if not k.startswith("CHAOS_DYNAMO_")}
    code = "import socket; print(socket.getaddrinfo.__module__)"
    assert python(code, env=env).stdout.strip() == "socket"
    assert python(code, env=lab_env).stdout.strip() == "chaos_dynamo.shim"


def test_a_bad_value_warns_and_leaves_python_working(lab_env: dict[str, str]) -> None:
    result = python("print('still running')", env=lab_env | {"CHAOS_DYNAMO_DNS": "nonsense"})
    assert result.returncode == 0 and result.stdout.strip() == "still running"
    assert "CHAOS_DYNAMO_DNS='nonsense' is not host:port" in result.stderr


def test_boto3_reaches_dynamodb_by_name_with_no_code_change(lab_env: dict[str, str]) -> None:
    code = "import boto3; print(len(boto3.client('dynamodb').list_tables()['TableNames']) >= 1)"
    result = python(code, env=lab_env)
    assert result.stdout.strip() == "True", result.stderr
    assert os.environ.get("CHAOS_DYNAMO_DNS") is None  # the test process itself is untouched


def test_a_lab_name_the_lab_refuses_is_noname_not_an_empty_list(lab_env: dict[str, str]) -> None:
    # The zones list a zone the lab does not serve: its names are lab names the lab refuses.
    env = lab_env | {"CHAOS_DYNAMO_ZONES": lab_env["CHAOS_DYNAMO_ZONES"] + ",example.internal"}
    result = python(RESOLVE, "db.example.internal", env=env)
    assert result.stdout.strip() == "gaierror -2", result.stderr


def test_a_non_loopback_server_is_refused(lab_env: dict[str, str]) -> None:
    result = python("import socket; print(socket.getaddrinfo.__module__)",
                    env=lab_env | {"CHAOS_DYNAMO_DNS": "192.0.2.53:53"})
    assert result.returncode == 0 and result.stdout.strip() == "socket"
    assert "CHAOS_DYNAMO_DNS=192.0.2.53:53 is not a loopback address" in result.stderr
    with pytest.raises(ValueError, match="CHAOS_DYNAMO_DNS"):
        shim.install(("192.0.2.53", 53))
    assert not shim.active()


def test_without_zones_a_silent_lab_dns_falls_back_to_the_system_resolver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    system_calls: list[str] = []

    def system(host: str, port: Any, *args: Any) -> list[Any]:
        system_calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.9", port))]

    monkeypatch.setattr(socket, "getaddrinfo", socket.getaddrinfo)  # put back whatever uninstall leaves
    monkeypatch.setattr(shim, "_original_getaddrinfo", system)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        with shim.lab_resolver(silent.getsockname(), zones=None, timeout=0.1):
            result = socket.getaddrinfo("db.anywhere.internal", 80, socket.AF_INET)
            counts = shim.stats()
    assert result[0][4] == ("127.0.0.9", 80)
    assert system_calls == ["db.anywhere.internal"]
    assert counts["passed_through"] == 1 and counts["lab_failures"] == 1


def test_with_zones_a_silent_lab_dns_is_a_temporary_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", socket.getaddrinfo)
    monkeypatch.setattr(shim, "_original_getaddrinfo", lambda *args: pytest.fail("passed through"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        with shim.lab_resolver(silent.getsockname(), zones=["anywhere.internal"], timeout=0.1):
            with pytest.raises(socket.gaierror) as info:
                socket.getaddrinfo("db.anywhere.internal", 80, socket.AF_INET)
    assert info.value.errno == shim.EAI_AGAIN
