"""The pytest fixtures a team uses in its own test suite, run in a separate pytest."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN

pytestmark = pytest.mark.integration

USER_TEST = '''
import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from chaos_dynamo.endpoint import actions


def client(lab):
    return boto3.client("dynamodb", endpoint_url=lab.dynamodb_url(), region_name=lab.region,
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=boto3.session.Config(retries={"max_attempts": 1}))


def test_reaches_dynamodb_by_name(chaos_dynamo_resolver):
    assert "chaos-dynamo-plans" in client(chaos_dynamo_resolver).list_tables()["TableNames"]


def test_sees_the_outage(chaos_dynamo_resolver):
    config = {"chaos_dynamo_api": chaos_dynamo_resolver.api_url}
    actions.empty_endpoint(configuration=config)
    try:
        with pytest.raises(EndpointConnectionError):
            client(chaos_dynamo_resolver).list_tables()
    finally:
        actions.restore_endpoint(configuration=config)
    assert client(chaos_dynamo_resolver).list_tables()["TableNames"]
'''


def test_fixtures_from_the_installed_plugin(tmp_path: Path) -> None:
    (tmp_path / "test_user_service.py").write_text(USER_TEST, encoding="utf-8")
    result = subprocess.run([str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--chaos-dynamo-seed", "9", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
