"""The lab driver's adapter: each op kind means exactly what ops.py says on DynamoDB (moto),
botocore's failures become the right outcomes, and the loop delivers answers, follow-ups
and timeouts to the fleet."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from chaos_dynamo.lease.driver import LabDriver, execute, make_clients, parse_item
from chaos_dynamo.lease.fleet import FleetParams, LeaseFleet
from chaos_dynamo.lease.managers import make_manager
from chaos_dynamo.lease.ops import Kind, LeaseItem, Op, Outcome, Result

TABLE = "leases-under-test"
NOW = 1_700_000_000.0


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def client(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        c = boto3.client("dynamodb", region_name="us-east-1")
        c.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                       AttributeDefinitions=[{"AttributeName": "lease_id", "AttributeType": "S"}],
                       KeySchema=[{"AttributeName": "lease_id", "KeyType": "HASH"}])
        yield c


def put(client: Any, key: str, owner: str, expires_at: float, version: int) -> None:
    client.put_item(TableName=TABLE, Item={"lease_id": {"S": key}, "owner": {"S": owner},
                                           "expires_at": {"N": repr(expires_at)},
                                           "version": {"N": str(version)}})


def get(client: Any, key: str) -> LeaseItem | None:
    item = client.get_item(TableName=TABLE, Key={"lease_id": {"S": key}}, ConsistentRead=True).get("Item")
    return parse_item(item) if item else None


def op(kind: Kind, key: str = "host-00001", owner: str = "me", version: int = 1,
       expires_at: float = NOW + 10, now: float = NOW, timeout: float = 1.0, id: int = 7) -> Op:
    return Op(id, kind, key, owner, version, expires_at, now, timeout)


# --- one op each ---------------------------------------------------------------------------

def test_renew_writes_expiry_and_next_version_when_version_and_owner_match(client: Any) -> None:
    put(client, "host-00001", "me", NOW + 1, 4)
    result = execute(client, op(Kind.RENEW, version=4, expires_at=NOW + 12.5), TABLE)
    assert result == Result(7, Outcome.OK)
    assert get(client, "host-00001") == LeaseItem("host-00001", "me", NOW + 12.5, 5)


@pytest.mark.parametrize(("stored", "why"), [
    (("me", 5), "the version moved on"),
    (("me", 3), "an older version"),
    (("someone-else", 4), "another owner at the same version"),
    (None, "no lease at all"),
])
def test_renew_fails_its_condition_and_changes_nothing(client: Any, stored: tuple[str, int] | None,
                                                       why: str) -> None:
    if stored is not None:
        put(client, "host-00001", stored[0], NOW + 1, stored[1])
    before = get(client, "host-00001")
    result = execute(client, op(Kind.RENEW, version=4), TABLE)
    assert result.outcome is Outcome.CONDITION_FAILED, why
    assert result.detail == "ConditionalCheckFailedException"
    assert get(client, "host-00001") == before


def test_read_returns_the_lease_or_none(client: Any) -> None:
    put(client, "host-00001", "other", NOW + 3.25, 9)
    assert execute(client, op(Kind.READ), TABLE) == Result(
        7, Outcome.OK, item=LeaseItem("host-00001", "other", NOW + 3.25, 9))
    assert execute(client, op(Kind.READ, key="host-99999"), TABLE) == Result(7, Outcome.OK, item=None)


def test_read_of_an_item_without_the_schema_is_an_error_naming_the_attribute(client: Any) -> None:
    client.put_item(TableName=TABLE, Item={"lease_id": {"S": "host-00001"}, "owner": {"S": "me"}})
    result = execute(client, op(Kind.READ), TABLE)
    assert result.outcome is Outcome.ERROR and "expires_at" in result.detail


def test_acquire_an_absent_lease_with_version_zero(client: Any) -> None:
    result = execute(client, op(Kind.ACQUIRE, version=0, expires_at=NOW + 10), TABLE)
    assert result.outcome is Outcome.OK
    assert get(client, "host-00001") == LeaseItem("host-00001", "me", NOW + 10, 1)


@pytest.mark.parametrize(("owner", "expires_at"), [
    ("me", NOW + 100),          # our own lease, even live
    ("someone-else", NOW - 1),  # another owner's, expired
])
def test_acquire_takes_a_lease_at_the_version_read(client: Any, owner: str, expires_at: float) -> None:
    put(client, "host-00001", owner, expires_at, 6)
    result = execute(client, op(Kind.ACQUIRE, version=6, expires_at=NOW + 10), TABLE)
    assert result.outcome is Outcome.OK
    assert get(client, "host-00001") == LeaseItem("host-00001", "me", NOW + 10, 7)


@pytest.mark.parametrize(("stored", "version", "why"), [
    (("someone-else", NOW + 5, 6), 6, "another owner's live lease can never be taken"),
    (("someone-else", NOW, 6), 6, "expiring exactly now is not expired (expires_at < now)"),
    (("me", NOW - 1, 7), 6, "a stale version: someone wrote after our read"),
    (("me", NOW - 1, 1), 0, "version 0 means absent, but it is there"),
])
def test_acquire_fails_its_condition_and_changes_nothing(client: Any, stored: tuple[str, float, int],
                                                         version: int, why: str) -> None:
    put(client, "host-00001", *stored)
    before = get(client, "host-00001")
    result = execute(client, op(Kind.ACQUIRE, version=version), TABLE)
    assert result.outcome is Outcome.CONDITION_FAILED, why
    assert get(client, "host-00001") == before


def test_an_aws_error_is_an_error_with_its_code(client: Any) -> None:
    for kind in Kind:
        result = execute(client, op(kind), "no-such-table")
        assert result == Result(7, Outcome.ERROR, detail="ResourceNotFoundException"), kind


def _client(endpoint: str, timeout: float = 0.3) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(read_timeout=timeout, connect_timeout=timeout,
                                      retries={"max_attempts": 1, "mode": "standard"}))


def test_a_slow_endpoint_is_a_timeout() -> None:
    # Accepts connections and never answers: only the read timeout ends the call.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        began = time.monotonic()
        result = execute(_client(f"http://127.0.0.1:{port}", timeout=0.3), op(Kind.RENEW), TABLE)
    assert result.outcome is Outcome.TIMEOUT and result.detail == "ReadTimeoutError"
    assert 0.25 < time.monotonic() - began < 3


def test_a_refused_connection_is_an_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once it is closed
    result = execute(_client(f"http://127.0.0.1:{port}"), op(Kind.READ), TABLE)
    assert result == Result(7, Outcome.ERROR, detail="EndpointConnectionError")


def test_a_name_that_resolves_to_nothing_is_a_dns_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "dynamodb.lab.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    result = execute(_client("http://dynamodb.lab.invalid:8000"), op(Kind.ACQUIRE), TABLE)
    assert result == Result(7, Outcome.ERROR, detail="dns")


def test_make_clients_gives_each_kind_its_timeout_and_one_attempt_per_op(aws_env: None) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once it is closed
    clients = make_clients({Kind.RENEW: 1.0, Kind.READ: 0.6, Kind.ACQUIRE: 0.6}, pool_size=64,
                           endpoint_url=f"http://127.0.0.1:{port}")
    for kind, timeout in ((Kind.RENEW, 1.0), (Kind.READ, 0.6), (Kind.ACQUIRE, 0.6)):
        config = clients[kind].meta.config
        assert config.read_timeout == timeout
        assert config.connect_timeout <= timeout
        assert config.max_pool_connections == 64
        attempts: list[str] = []
        clients[kind].meta.events.register("before-send.dynamodb",
                                           lambda attempts=attempts, **kw: attempts.append("x"))
        assert execute(clients[kind], op(kind), TABLE).outcome is Outcome.ERROR
        assert attempts == ["x"], f"{kind}: botocore retried"


# --- the loop ------------------------------------------------------------------------------

class ScriptedFleet:
    """A fleet that sends ``first`` at once, then one follow-up per answer (up to ``more``)."""

    def __init__(self, first: list[Op], more: int = 0) -> None:
        self.first = first
        self.more = more
        self.answers: list[Result] = []
        self._next_id = 100

    def poll(self, now: float) -> list[Op]:
        out, self.first = self.first, []
        return out

    def complete(self, result: Result, now: float) -> list[Op]:
        self.answers.append(result)
        if self.more <= 0:
            return []
        self.more -= 1
        self._next_id += 1
        return [op(Kind.READ, id=self._next_id, timeout=1.0)]

    def next_wake(self) -> float:
        return float("inf")


def _run(driver: LabDriver[Any], until: Any, timeout: float = 10.0) -> bool:
    stop = threading.Event()
    thread = threading.Thread(target=driver.run, args=(stop,), kwargs={"grace": 1.0}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not until() and time.monotonic() < deadline:
            time.sleep(0.01)
        return bool(until())
    finally:
        began = time.monotonic()
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
        assert time.monotonic() - began < 2.0, "the driver must stop promptly"


def test_the_loop_feeds_answers_back_and_sends_follow_ups() -> None:
    def perform(client: Any, o: Op, table: str) -> Result:
        return Result(o.id, Outcome.OK)

    fleet = ScriptedFleet([op(Kind.RENEW, id=1), op(Kind.RENEW, id=2)], more=5)
    driver = LabDriver(fleet, {k: None for k in Kind}, perform=perform)
    assert _run(driver, lambda: len(fleet.answers) == 7)
    assert sorted(a.op_id for a in fleet.answers) == [1, 2, 101, 102, 103, 104, 105]
    sent, results, late = driver.counters()
    assert sent == {"renew": 2, "read": 5}
    assert results == {("renew", "ok"): 2, ("read", "ok"): 5} and late == 0


def test_an_unanswered_op_is_a_timeout_at_its_deadline_and_its_late_answer_is_dropped() -> None:
    release = threading.Event()

    def perform(client: Any, o: Op, table: str) -> Result:
        release.wait(5)
        return Result(o.id, Outcome.OK)

    fleet = ScriptedFleet([op(Kind.ACQUIRE, id=1, timeout=0.2)])
    driver = LabDriver(fleet, {k: None for k in Kind}, perform=perform)
    stop = threading.Event()
    thread = threading.Thread(target=driver.run, args=(stop,), daemon=True)
    began = time.monotonic()
    thread.start()
    try:
        assert _wait(lambda: fleet.answers)
        took = time.monotonic() - began
        assert fleet.answers == [Result(1, Outcome.TIMEOUT, detail="deadline")]
        assert 0.15 < took < 1.5, took
        release.set()
        assert _wait(lambda: driver.counters()[2] == 1)  # the late OK was dropped
        assert len(fleet.answers) == 1
    finally:
        release.set()
        stop.set()
        thread.join(5)


def test_a_failing_perform_is_an_error_not_a_stall() -> None:
    def perform(client: Any, o: Op, table: str) -> Result:
        raise KeyError("bug")

    fleet = ScriptedFleet([op(Kind.READ, id=1)])
    assert _run(LabDriver(fleet, {k: None for k in Kind}, perform=perform), lambda: fleet.answers)
    assert fleet.answers == [Result(1, Outcome.ERROR, detail="KeyError")]


def _wait(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_real_fleet_renews_its_leases_through_the_driver(client: Any) -> None:
    now = time.time()
    params = FleetParams(leases=5, renew_every=0.2, expiry=1.0, renew_timeout=1.0)
    for n in range(5):
        put(client, f"host-{n:05d}", "me", now + params.expiry, 1)
    fleet = LeaseFleet(params, make_manager("hardened", random.Random(1)), owner="me", now=now,
                       rng=random.Random(2))
    clients = {k: client for k in Kind}
    driver = LabDriver(fleet, clients, table=TABLE)

    def versions() -> int:
        return sum(item.version for n in range(5) if (item := get(client, f"host-{n:05d}")))

    assert _run(driver, lambda: versions() >= 5 * 4, timeout=15)
    stats = driver.read(lambda f: f.stats())
    assert stats.believed_live == 5 and stats.renewals_failed == 0 and stats.jobs_started == 0
    for n in range(5):
        item = get(client, f"host-{n:05d}")
        assert item is not None and item.owner == "me" and item.expires_at > now + params.expiry
