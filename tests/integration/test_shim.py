"""The getaddrinfo shim, switched on by the environment in a fresh Python process."""

from __future__ import annotations

import os
import subprocess

import pytest

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
