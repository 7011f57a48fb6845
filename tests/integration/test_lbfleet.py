"""The LB fleet over real sockets, in front of a real moto server.

Every wait is on a condition with a timeout (never a fixed sleep), and every count is
exact: these counters are how retry storms get measured, so an off-by-one is a bug.
"""

from __future__ import annotations

import errno
import http.client
import json
import logging
import random
import resource
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from moto.server import ThreadedMotoServer

from chaos_dynamo.clock import FakeClock, wait_until
from chaos_dynamo.errors import LabError
from chaos_dynamo.lbfleet import _sockets
from chaos_dynamo.lbfleet.proxy import HEALTH_PATH, LBFleet, LoadBalancer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SPECS = [("lb-a", "127.0.0.11"), ("lb-b", "127.0.0.12"), ("lb-c", "127.0.0.13")]
TABLE = "lbfleet-shared"
KEY = {"pk": {"S": "k1"}}
# A boto3 client connecting to 127.0.0.x leaves from 127.0.0.1 (the loopback route's src).
BOTO_CLIENT_HOST = "127.0.0.1"
OTHER_CLIENT_HOST = "127.0.0.21"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one stderr line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    direct = dynamodb(url)
    create_table(direct, TABLE)
    direct.put_item(TableName=TABLE, Item={**KEY, "v": {"S": "hello"}})
    yield url
    server.stop()


@pytest.fixture
def fleet(moto_url: str) -> Iterator[LBFleet]:
    with LBFleet(SPECS, moto_url) as started:
        yield started


# --------------------------------------------------------------------------- helpers


def dynamodb(url: str, **config: Any) -> Any:
    """A boto3 DynamoDB client on ``url`` that never retries, so every call is one request."""
    settings = {"retries": {"mode": "standard", "total_max_attempts": 1}, **config}
    return boto3.session.Session().client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(connect_timeout=5, read_timeout=30, **settings),
    )


def create_table(client: Any, name: str) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def get_status(client: Any) -> tuple[int, str]:
    """(HTTP status, error code or "") of one GetItem."""
    try:
        response = client.get_item(TableName=TABLE, Key=KEY)
    except ClientError as error:
        meta = error.response["ResponseMetadata"]
        return meta["HTTPStatusCode"], error.response["Error"]["Code"]
    return response["ResponseMetadata"]["HTTPStatusCode"], ""


def raw_request(
    address: str,
    port: int,
    method: str = "GET",
    path: str = "/",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    source: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection: (status, headers, body)."""
    source_address = (source, 0) if source else None
    conn = http.client.HTTPConnection(address, port, timeout=10, source_address=source_address)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def refuses(address: str, port: int) -> bool:
    """True when nothing listens on address:port (the kernel answers RST)."""
    try:
        socket.create_connection((address, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def expected_statuses(seed: int, rate: float, status: int, count: int) -> list[int]:
    """What set_error_rate(rate, status, seed) must answer to ``count`` sequential requests."""
    rng = random.Random(seed)
    return [status if rng.random() < rate else 200 for _ in range(count)]


# --------------------------------------------------------------------------- tests


def test_rejects_anything_but_loopback(moto_url: str) -> None:
    with pytest.raises(ValueError, match="address"):
        LoadBalancer("x", "0.0.0.0", 0, moto_url)
    with pytest.raises(ValueError, match="address"):
        LoadBalancer("x", "192.168.1.10", 0, moto_url)
    with pytest.raises(ValueError, match="upstream"):
        LoadBalancer("x", "127.0.0.11", 0, "http://10.0.0.1:8000")
    with pytest.raises(ValueError, match=r"specs\[1\]\.address"):
        LBFleet([("a", "127.0.0.11"), ("b", "10.0.0.2")], moto_url)


def test_fleet_shares_one_port(fleet: LBFleet) -> None:
    assert fleet.port > 0
    assert [(lb.name, lb.address, lb.port) for lb in fleet] == [
        (name, address, fleet.port) for name, address in SPECS
    ]
    assert fleet["lb-b"].url == f"http://127.0.0.12:{fleet.port}"
    with pytest.raises(KeyError, match="lb-z"):
        fleet["lb-z"]


def test_table_put_get_through_lb_count_exactly(fleet: LBFleet) -> None:
    client = dynamodb(fleet["lb-b"].url)
    create_table(client, "orders")
    for n in range(3):
        client.put_item(TableName="orders", Item={"pk": {"S": f"o{n}"}, "n": {"N": str(n)}})
    for n in range(3):
        item = client.get_item(TableName="orders", Key={"pk": {"S": f"o{n}"}})["Item"]
        assert item["n"] == {"N": str(n)}
    status, _, body = raw_request(
        "127.0.0.12",
        fleet.port,
        "POST",
        body=b"{}",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/"
            "dynamodb/aws4_request, SignedHeaders=host, Signature=00",
        },
        source=OTHER_CLIENT_HOST,
    )
    assert status == 200 and "orders" in json.loads(body)["TableNames"]

    counters = fleet.counters()
    lb_b = counters["lb-b"]
    assert lb_b["requests"] == 8
    assert lb_b["by_operation"] == {"CreateTable": 1, "PutItem": 3, "GetItem": 3, "ListTables": 1}
    assert lb_b["by_client"] == {BOTO_CLIENT_HOST: 7, OTHER_CLIENT_HOST: 1}
    assert lb_b["by_status"] == {"200": 8}
    assert counters["lb-a"]["requests"] == counters["lb-c"]["requests"] == 0
    assert counters["total"]["requests"] == 8
    assert counters["total"]["by_operation"]["GetItem"] == 3
    json.dumps(counters)  # JSON-serializable as promised

    gets = fleet.request_log(operation="GetItem")
    assert [(r.lb, r.client, r.status) for r in gets] == [("lb-b", BOTO_CLIENT_HOST, 200)] * 3
    assert all("Botocore/" in r.user_agent for r in gets)
    assert [r.time for r in fleet.request_log()] == sorted(r.time for r in fleet.request_log())
    assert len(fleet.request_log(client=OTHER_CLIENT_HOST)) == 1
    assert fleet.request_log(since=gets[-1].time, operation="GetItem") == [gets[-1]]


def test_keep_alive_reuses_one_connection(fleet: LBFleet) -> None:
    lb = fleet["lb-a"]
    client = dynamodb(lb.url)
    for _ in range(5):
        assert get_status(client) == (200, "")
    assert lb.counters()["connections_accepted"] == 1
    assert len({record.client_port for record in lb.request_log()}) == 1


def test_max_connection_age_forces_a_new_connection(moto_url: str) -> None:
    clock = FakeClock()
    with LoadBalancer(
        "aging", "127.0.0.14", 0, moto_url, max_connection_age=30.0, clock=clock
    ) as lb:
        client = dynamodb(lb.url)
        for _ in range(3):
            assert get_status(client) == (200, "")
        assert lb.counters()["connections_accepted"] == 1

        clock.advance(31.0)
        assert get_status(client) == (200, "")  # answered with Connection: close
        counters = lb.counters()
        assert (counters["connections_accepted"], counters["connections_aged_out"]) == (1, 1)

        assert get_status(client) == (200, "")
        assert lb.counters()["connections_accepted"] == 2
        ports = [record.client_port for record in lb.request_log()]
        assert len(set(ports[:4])) == 1 and ports[4] != ports[0]


def test_down_refuses_connections_and_up_serves_again(fleet: LBFleet) -> None:
    lb = fleet["lb-b"]
    client = dynamodb(lb.url)
    assert get_status(client) == (200, "")  # leaves a keep-alive connection open

    lb.set_down(True)
    assert lb.faults()["down"] is True
    assert refuses(lb.address, lb.port)
    with pytest.raises(EndpointConnectionError):
        client.get_item(TableName=TABLE, Key=KEY)
    assert fleet["lb-a"].counters()["requests"] == 0  # the others are unaffected
    assert get_status(dynamodb(fleet["lb-a"].url)) == (200, "")

    lb.set_down(False)
    assert get_status(client) == (200, "")
    counters = lb.counters()
    assert counters["requests"] == 2  # a refused connection cannot be counted
    assert counters["connections_accepted"] == 2  # the old one was closed by the down


def test_refuse_for_comes_back_on_its_own(fleet: LBFleet) -> None:
    lb = fleet["lb-c"]
    started = time.monotonic()
    lb.refuse_for(0.5)
    assert refuses(lb.address, lb.port)
    assert lb.faults()["refusing_for"] is not None

    assert wait_until(lambda: not lb.faults()["down"], timeout=10)
    assert time.monotonic() - started >= 0.45
    assert lb.faults()["refusing_for"] is None
    assert get_status(dynamodb(lb.url)) == (200, "")


def test_set_down_cancels_a_pending_refuse_for(fleet: LBFleet) -> None:
    lb = fleet["lb-c"]
    lb.refuse_for(30.0)
    lb.set_down(False)
    assert lb.faults() == {**lb.faults(), "down": False, "refusing_for": None}
    assert get_status(dynamodb(lb.url)) == (200, "")


def test_latency_knob_delays_each_request(fleet: LBFleet) -> None:
    lb = fleet["lb-a"]
    client = dynamodb(lb.url)
    lb.set_latency(0.3)
    started = time.monotonic()
    assert get_status(client) == (200, "")
    assert time.monotonic() - started >= 0.3
    assert lb.request_log()[-1].latency >= 0.3
    assert lb.faults()["latency"] == 0.3

    lb.reset_faults()
    assert lb.faults()["latency"] == 0.0


@pytest.mark.parametrize(
    ("status", "code", "seed"),
    [(400, "ProvisionedThroughputExceededException", 7), (500, "InternalServerError", 3)],
)
def test_error_rate_with_a_seed_replays_the_same_statuses(
    fleet: LBFleet, status: int, code: str, seed: int
) -> None:
    lb = fleet["lb-b"]
    client = dynamodb(lb.url)
    expected = expected_statuses(seed, 0.4, status, 25)
    assert status in expected and 200 in expected  # the seed exercises both outcomes

    for _ in range(2):  # the same seed twice gives the same run
        lb.set_error_rate(0.4, status=status, seed=seed)
        seen = [get_status(client) for _ in range(25)]
        assert [s for s, _ in seen] == expected
        assert {c for s, c in seen if s != 200} == {code}

    injected = expected.count(status) * 2
    counters = lb.counters()
    assert counters["injected_errors"] == injected
    assert counters["by_status"] == {"200": 50 - injected, str(status): injected}

    lb.reset_faults()
    assert get_status(client) == (200, "")


def test_error_rate_rejects_unknown_status(fleet: LBFleet) -> None:
    with pytest.raises(ValueError, match="status"):
        fleet["lb-a"].set_error_rate(0.5, status=418)
    with pytest.raises(ValueError, match="rate"):
        fleet["lb-a"].set_error_rate(1.5)


def test_health_endpoint_is_not_dynamodb_traffic(fleet: LBFleet) -> None:
    lb = fleet["lb-c"]
    status, _, body = raw_request(lb.address, lb.port, path=HEALTH_PATH)
    assert (status, json.loads(body)) == (200, {"name": "lb-c", "healthy": True})

    lb.set_unhealthy(True)
    status, _, body = raw_request(lb.address, lb.port, path=HEALTH_PATH)
    assert (status, json.loads(body)) == (503, {"name": "lb-c", "healthy": False})
    assert get_status(dynamodb(lb.url)) == (200, "")  # unhealthy still serves traffic

    counters = lb.counters()
    assert (counters["health_checks"], counters["requests"]) == (2, 1)
    assert counters["by_operation"] == {"GetItem": 1}


def test_burst_of_16_threads_counts_exactly_800(fleet: LBFleet) -> None:
    lb = fleet["lb-a"]
    client = dynamodb(lb.url, max_pool_connections=16)
    barrier = threading.Barrier(16)
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(50):
                client.get_item(TableName=TABLE, Key=KEY)
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not failures
    counters = lb.counters()
    assert counters["requests"] == 800
    assert counters["by_operation"] == {"GetItem": 800}
    assert counters["by_status"] == {"200": 800}
    assert counters["by_client"] == {BOTO_CLIENT_HOST: 800}
    assert len(lb.request_log(operation="GetItem")) == 800
    assert 1 <= counters["connections_accepted"] <= 16


class _EchoHandler(BaseHTTPRequestHandler):
    """An upstream that echoes what it received, in a chunked response."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        echo = json.dumps(
            {"path": self.path, "headers": dict(self.headers.items()), "body": body.decode()}
        ).encode()
        self.send_response(201)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Echo", "yes")
        self.end_headers()
        half = len(echo) // 2
        for part in (echo[:half], echo[half:]):
            self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_forwards_request_as_is_with_x_forwarded_for() -> None:
    echo = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    upstream = f"http://127.0.0.1:{echo.server_address[1]}"
    try:
        with LoadBalancer("echo", "127.0.0.15", 0, upstream) as lb:
            host = f"dynamodb.us-east-1.amazonaws.com:{lb.port}"
            status, headers, body = raw_request(
                lb.address,
                lb.port,
                "POST",
                "/some/path?x=1",
                body=b'{"hello": "world"}',
                headers={"Host": host, "X-Forwarded-For": "10.1.2.3"},
            )
    finally:
        echo.shutdown()
        echo.server_close()
    seen = json.loads(body)
    assert status == 201 and headers["X-Echo"] == "yes"
    assert int(headers["Content-Length"]) == len(body) and "Transfer-Encoding" not in headers
    assert seen["path"] == "/some/path?x=1" and seen["body"] == '{"hello": "world"}'
    assert seen["headers"]["Host"] == host
    assert seen["headers"]["X-Forwarded-For"] == "10.1.2.3, 127.0.0.1"


def test_unreachable_upstream_is_502_and_silent_upstream_is_504() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # completes handshakes, never answers
    silent_port = silent.getsockname()[1]
    try:
        with LoadBalancer("gone", "127.0.0.16", 0, f"http://127.0.0.1:{closed_port}") as lb:
            status, _, body = raw_request(lb.address, lb.port, "POST", body=b"{}")
            assert status == 502 and json.loads(body)["__type"].endswith("#BadGateway")
            assert lb.counters()["upstream_errors"] == 1
        with LoadBalancer(
            "slow", "127.0.0.16", 0, f"http://127.0.0.1:{silent_port}", upstream_timeout=0.3
        ) as lb:
            status, _, body = raw_request(lb.address, lb.port, "POST", body=b"{}")
            assert status == 504 and json.loads(body)["__type"].endswith("#GatewayTimeout")
            assert lb.counters()["by_status"] == {"504": 1}
    finally:
        silent.close()


def test_stop_leaves_nothing_listening(moto_url: str) -> None:
    specs = [("stop-a", "127.0.0.17"), ("stop-b", "127.0.0.18")]
    fleet = LBFleet(specs, moto_url)
    fleet.start()
    client = dynamodb(fleet["stop-a"].url)
    assert get_status(client) == (200, "")  # a keep-alive connection is open
    port = fleet.port
    fleet.stop()

    assert not [t for t in threading.enumerate() if t.name.startswith("lb-stop-")]
    for _, address in specs:
        assert refuses(address, port)
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))  # fails if anything still listens there
            probe.listen(1)
        finally:
            probe.close()


def test_down_cuts_an_in_flight_request_and_counts_it_as_dropped() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    silent.settimeout(30)
    outcome: list[BaseException | int] = []

    def call(address: str, port: int) -> None:
        try:
            outcome.append(raw_request(address, port, "POST", body=b"{}")[0])
        except BaseException as error:  # noqa: BLE001 - inspected below
            outcome.append(error)

    upstream = f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        with LoadBalancer("cut", "127.0.0.19", 0, upstream, upstream_timeout=60.0) as lb:
            caller = threading.Thread(target=call, args=(lb.address, lb.port))
            caller.start()
            forwarded, _ = silent.accept()  # the request is now in flight upstream
            started = time.monotonic()
            lb.set_down(True)
            caller.join(timeout=30)
            forwarded.close()
            assert time.monotonic() - started < 10  # cut now, not after the upstream timeout
            assert len(outcome) == 1 and isinstance(outcome[0], ConnectionError)
            # The client sees the cut before the LB's thread records it: wait for the record.
            assert wait_until(lambda: lb.counters()["dropped"] == 1, timeout=10)
            counters = lb.counters()
            assert (counters["requests"], counters["by_status"]) == (1, {"0": 1})
            assert counters["upstream_errors"] == 0
    finally:
        silent.close()


def test_fleet_on_a_taken_port_fails_and_leaves_nothing_listening(moto_url: str) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.12", 0))
    squatter.listen(1)
    port = squatter.getsockname()[1]
    try:
        fleet = LBFleet(SPECS, moto_url, port=port)
        with pytest.raises(LabError, match="127.0.0.12"):
            fleet.start()
        assert refuses("127.0.0.11", port)  # the LB started before the collision is gone
    finally:
        squatter.close()


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes its side (the socket has a timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_close_connections_closes_idle_now_and_busy_after_their_response() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    silent.settimeout(30)
    upstream = f"http://127.0.0.1:{silent.getsockname()[1]}"
    request = (b"POST / HTTP/1.1\r\nHost: lb\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n"
               b"X-Chaos-Dynamo-Service: billing\r\nContent-Length: 2\r\n\r\n{}")
    try:
        with LoadBalancer("closer", "127.0.0.20", 0, upstream, upstream_timeout=60.0) as lb:
            idle = socket.create_connection((lb.address, lb.port), timeout=30)
            idle.sendall(f"GET {HEALTH_PATH} HTTP/1.1\r\nHost: lb\r\n\r\n".encode())
            assert b"200 OK" in idle.recv(65536)  # answered; the connection stays open
            busy = socket.create_connection((lb.address, lb.port), timeout=30)
            busy.sendall(request)
            forwarded, _ = silent.accept()  # the LB is waiting on the upstream: busy
            forwarded.settimeout(30)

            assert lb.close_connections() == 2
            assert idle.recv(65536) == b""  # closed now, not at the idle timeout
            assert lb.counters()["connections_closed"] == 2

            head = b""
            while b"\r\n\r\n{}" not in head:
                head += forwarded.recv(65536)
            body = b'{"TableNames":[]}'
            forwarded.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            forwarded.close()
            answer = _read_until_closed(busy)  # the response, then the LB closes
            assert answer.startswith(b"HTTP/1.1 200 OK") and b"\r\nConnection: close\r\n" in answer
            assert answer.endswith(b"\r\n\r\n" + body)
            idle.close()
            busy.close()
            assert wait_until(lambda: lb.counters()["requests"] == 1, timeout=10)
            [record] = lb.request_log()
            assert (record.status, record.operation, record.service) == (200, "ListTables", "billing")
            assert lb.close_connections() == 0
            assert get_status_raw(lb) == 200  # the LB still serves new connections
    finally:
        silent.close()


def get_status_raw(lb: LoadBalancer) -> int:
    return raw_request(lb.address, lb.port, path=HEALTH_PATH)[0]


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 400), ("ServiceUnavailable", 503),
     ("ProvisionedThroughputExceededException", 400), ("InternalServerError", 500)],
)
def test_error_rate_by_code_answers_that_dynamodb_error(fleet: LBFleet, code: str, status: int) -> None:
    lb = fleet["lb-c"]
    lb.set_error_rate(1.0, code=code)
    assert (lb.faults()["error_code"], lb.faults()["error_status"]) == (code, status)
    assert get_status(dynamodb(lb.url)) == (status, code)
    with pytest.raises(ValueError, match="code"):
        lb.set_error_rate(1.0, code="SlowDown")
    with pytest.raises(ValueError, match="status"):
        lb.set_error_rate(1.0, status=200 if status != 200 else 500, code=code)
    assert lb.faults()["error_code"] == code  # a refused call changed nothing
    lb.reset_faults()
    assert (lb.faults()["error_rate"], lb.faults()["error_code"]) == (0.0, "InternalServerError")
    assert get_status(dynamodb(lb.url)) == (200, "")


# --------------------------------------------------------------------------- file descriptors


def test_blackhole_budget_is_a_quarter_of_the_soft_fd_limit() -> None:
    assert _sockets.blackhole_budget(1024) == 256
    assert _sockets.blackhole_budget(20) == 16  # a floor, so the knob still does something
    assert _sockets.blackhole_budget(resource.RLIM_INFINITY) == 16_384
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert _sockets.blackhole_budget() == _sockets.blackhole_budget(soft)


def test_blackholed_connections_share_one_budget_across_lbs(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = _sockets._HoldBudget(3)
    monkeypatch.setattr(_sockets, "_BLACKHOLE_BUDGET", budget)
    unused = "http://127.0.0.1:9"  # nothing is forwarded: every connection is blackholed
    held: list[socket.socket] = []

    def connect(lb: LoadBalancer) -> socket.socket | None:
        """A new connection; None when reset before connect() returned (it can be that quick)."""
        try:
            sock = socket.create_connection((lb.address, lb.port), timeout=5)
        except ConnectionResetError:
            return None
        held.append(sock)
        return sock

    def reset(sock: socket.socket | None) -> bool:
        if sock is None:
            return True
        try:
            return sock.recv(64) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    try:
        with LoadBalancer("lb-hold-a", "127.0.0.71", 0, unused) as a, \
                LoadBalancer("lb-hold-b", "127.0.0.72", 0, unused) as b:
            a.set_intermittent(1.0, "blackhole")
            b.set_intermittent(1.0, "blackhole")
            on_a = [connect(a) for _ in range(4)]
            assert wait_until(lambda: a.counters()["connections_blackholed"] == 4, timeout=10)
            assert reset(on_a[0])  # the oldest made room for the fourth
            assert budget.used == 3

            first_b = connect(b)  # a holds the whole budget: b resets its new one at once
            assert wait_until(lambda: b.counters()["connections_blackholed"] == 1, timeout=10)
            assert reset(first_b) and budget.used == 3

            a.clear_intermittent()  # a's held connections go, and so does their share
            assert budget.used == 0
            second_b = connect(b)
            assert wait_until(lambda: budget.used == 1, timeout=10)
            assert second_b is not None
            second_b.settimeout(0.2)
            assert not reset(second_b)  # held, unanswered
    finally:
        for sock in held:
            sock.close()
    assert budget.used == 0  # stopping b released its one


class _NoFdsLeft:
    """A listening socket whose ``accept`` always finds the process out of descriptors."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.calls: list[float] = []

    def fileno(self) -> int:
        return self.real.fileno()

    def getsockname(self) -> Any:
        return self.real.getsockname()

    def accept(self) -> Any:
        self.calls.append(time.monotonic())
        raise OSError(errno.EMFILE, "Too many open files")

    def close(self) -> None:
        self.real.close()


def test_accept_out_of_fds_backs_off_instead_of_spinning(monkeypatch: pytest.MonkeyPatch) -> None:
    fakes: list[_NoFdsLeft] = []
    real_bind = _sockets._bind_listener

    def bind(address: str, port: int) -> Any:
        fakes.append(_NoFdsLeft(real_bind(address, port)))
        return fakes[-1]

    monkeypatch.setattr(_sockets, "_bind_listener", bind)
    listener = _sockets._Listener("127.0.0.73", 0, lambda sock, peer: sock.close(), "nofds")
    client = socket.create_connection(("127.0.0.73", listener.port), timeout=5)  # stays pending
    try:
        assert wait_until(lambda: len(fakes[0].calls) >= 3, timeout=10)
        first, _, third = fakes[0].calls[:3]
        assert third - first >= 2 * _sockets._ACCEPT_BACKOFF_S * 0.9  # a pause per attempt
    finally:
        listener.close()  # ends the backoff at once: close() returns
        client.close()
    assert fakes[0].real.fileno() == -1  # the accept thread closed the listening socket
