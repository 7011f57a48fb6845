"""The call log's ``client`` events: real botocore clients made in-process with the hooks on
(making a client sends nothing), read back as :class:`~chaos_dynamo.calllog.Client`; and the
client ids and application pauses the audit reads from ``call`` events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo import callhooks, calllog

ENV = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB",
                 "AWS_CONFIG_FILE", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    sink = calllog.CallLogWriter(tmp_path / "calls" / "app-1.jsonl")
    callhooks.install(sink, service="app")
    try:
        yield tmp_path / "calls"
    finally:
        callhooks.uninstall()
        sink.close()


def line_of(marker: str) -> int:
    """The line of this file holding ``marker`` (a comment at the end of a line)."""
    lines = Path(__file__).read_text().splitlines()
    return 1 + next(i for i, text in enumerate(lines) if text.rstrip().endswith(marker))


def test_a_client_with_defaults_is_described_as_botocore_resolved_it(logged: Path) -> None:
    import boto3

    boto3.client("dynamodb")  # site: default
    (client,) = calllog.read_clients(logged)
    assert (client.api, client.prefix, client.region, client.host) == (
        "dynamodb", "dynamodb", "us-east-1", "dynamodb.us-east-1.amazonaws.com")
    assert client.retry_mode == "standard"  # botocore 1.44's default mode
    assert client.max_attempts == 4  # botocore's standard-mode figure for DynamoDB
    assert (client.connect_timeout, client.connect_timeout_set, client.read_timeout, client.read_timeout_set) == (
        60.0, False, 60.0, False)
    assert client.max_pool_connections == 10 and client.service == "app" and client.id.endswith("-c1")
    assert client.site == f"{__file__}:{line_of('# site: default')}"
    assert client.function == "test_a_client_with_defaults_is_described_as_botocore_resolved_it"


def test_what_the_application_set_is_told_from_botocores_defaults(logged: Path) -> None:
    import boto3
    import botocore.session
    from botocore.config import Config

    boto3.session.Session().client("dynamodb", region_name="eu-west-1", endpoint_url="http://127.0.0.1:9",
                                   config=Config(connect_timeout=60, read_timeout=5, retries={"mode": "legacy"}))
    boto3.client("sqs", config=Config(retries={"mode": "legacy", "max_attempts": 2}))
    botocore.session.get_session().create_client("sts", config=Config(retries={"total_max_attempts": 1}))
    legacy, sqs, sts = calllog.read_clients(logged)
    assert (legacy.region, legacy.endpoint_url, legacy.retry_mode) == ("eu-west-1", "http://127.0.0.1:9", "legacy")
    assert legacy.max_attempts == 10  # legacy mode's DynamoDB figure (botocore's _retry.json)
    assert (legacy.connect_timeout, legacy.connect_timeout_set) == (60.0, True)  # chosen, even if 60
    assert (legacy.read_timeout, legacy.read_timeout_set) == (5.0, True)
    assert (sqs.retry_mode, sqs.max_attempts) == ("legacy", 3)
    assert (sts.api, sts.retry_mode, sts.max_attempts) == ("sts", "standard", 1)
    assert (sts.connect_timeout, sts.connect_timeout_set) == (60.0, False)
    assert all(c.site.startswith(f"{__file__}:") for c in (legacy, sqs, sts))


def test_calls_name_their_client(logged: Path) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import EndpointConnectionError

    client = boto3.client("dynamodb", endpoint_url="http://127.0.0.1:9",
                          config=Config(retries={"total_max_attempts": 1}, connect_timeout=0.5))
    with pytest.raises(EndpointConnectionError):
        client.list_tables()
    (made,) = calllog.read_clients(logged)
    (call,) = calllog.read_calls(logged)
    assert call.clients == (made.id,) and call.api == "dynamodb" and call.pauses == ()


def _call(cid: str, start: float, ok: bool, client: str) -> list[dict[str, Any]]:
    return [{"e": "call", "id": cid, "t": start, "op": "PutItem", "svc": "s", "pid": 7, "th": 1, "key": "k",
             "client": client, "api": "dynamodb"},
            {"e": "attempt", "id": cid, "t": start + 0.001, "n": 1},
            {"e": "outcome", "id": cid, "t": start + 0.002, "n": 1, "status": 200 if ok else None,
             "error": None if ok else "EndpointConnectionError", "dns": not ok},
            {"e": "end", "id": cid, "t": start + 0.003, "ok": ok, "error": None if ok else "EndpointConnectionError"}]


def test_a_joined_call_keeps_each_client_and_the_pause_before_each_retry() -> None:
    events = [*_call("7-1", 1.0, False, "7-c1"), *_call("7-2", 1.103, False, "7-c2"),
              *_call("7-3", 1.406, True, "7-c3"), {"e": "client", "id": "7-c1", "t": 0.9}]
    (call,) = calllog.assemble(events)
    assert call.clients == ("7-c1", "7-c2", "7-c3") and call.client_calls == 3
    assert [round(p, 3) for p in call.pauses] == [0.1, 0.3]
    assert [c.id for c in calllog.clients_from(events)] == ["7-c1"]
