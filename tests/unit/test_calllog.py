"""The call log: assembling hand-written events, and the botocore hooks driven by hand."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from chaos_dynamo import callhooks, calllog
from chaos_dynamo.clock import FakeClock

T = 1_700_000_000.0


def call(cid: str, t: float, op: str = "GetItem", svc: str = "checkout") -> dict[str, Any]:
    return {"e": "call", "id": cid, "t": t, "op": op, "svc": svc, "pid": 7}


def attempt(cid: str, t: float, n: int) -> dict[str, Any]:
    return {"e": "attempt", "id": cid, "t": t, "n": n}


def outcome(cid: str, t: float, n: int, status: int | None = None, error: str | None = None,
            dns: bool = False) -> dict[str, Any]:
    return {"e": "outcome", "id": cid, "t": t, "n": n, "status": status, "error": error, "dns": dns}


def end(cid: str, t: float, ok: bool, error: str | None = None) -> dict[str, Any]:
    return {"e": "end", "id": cid, "t": t, "ok": ok, "error": error}


def write_lines(path: Path, events: list[dict[str, Any]], tail: str = "") -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + tail)


# --- calllog ---------------------------------------------------------------------------
def test_a_call_with_retries_is_assembled_attempt_by_attempt() -> None:
    events = [call("7-1", T), attempt("7-1", T + 0.1, 1),
              outcome("7-1", T + 0.2, 1, error="EndpointConnectionError", dns=True),
              attempt("7-1", T + 0.3, 2), outcome("7-1", T + 0.4, 2, status=200), end("7-1", T + 0.5, True)]
    (got,) = calllog.assemble(events)
    assert (got.id, got.service, got.pid, got.operation, got.ok, got.error) == ("7-1", "checkout", 7, "GetItem", True, None)
    assert got.finished and got.start == T and got.end == T + 0.5
    assert got.attempts == (
        calllog.Attempt(1, T + 0.1, T + 0.2, None, "EndpointConnectionError", True),
        calllog.Attempt(2, T + 0.3, T + 0.4, 200, None, False),
    )


def test_a_call_still_retrying_is_read_with_the_attempts_so_far() -> None:
    events = [call("7-1", T), attempt("7-1", T + 1, 1), outcome("7-1", T + 2, 1, status=500, error="InternalServerError"),
              attempt("7-1", T + 3, 2)]
    (got,) = calllog.assemble(events)
    assert not got.finished and got.ok is None
    assert [(a.number, a.end, a.status) for a in got.attempts] == [(1, T + 2, 500), (2, None, None)]


def test_events_of_unknown_calls_are_ignored_and_calls_come_back_by_start_time() -> None:
    events = [attempt("9-9", T, 1), end("9-9", T, False), call("7-2", T + 5), call("7-1", T + 1),
              outcome("9-9", T, 1, status=200)]
    assert [c.id for c in calllog.assemble(events)] == ["7-1", "7-2"]


def test_an_outcome_without_its_attempt_still_counts_as_an_attempt() -> None:
    (got,) = calllog.assemble([call("7-1", T), outcome("7-1", T + 1, 1, error="ConnectTimeoutError")])
    assert [(a.number, a.start, a.end, a.error) for a in got.attempts] == [(1, T + 1, T + 1, "ConnectTimeoutError")]


def test_torn_and_foreign_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "checkout-7.jsonl"
    lines = [json.dumps(call("7-1", T)), "not json", json.dumps([1, 2]), json.dumps({"no": "kind"}),
             json.dumps(end("7-1", T + 1, True))]
    path.write_text("\n".join(lines) + "\n" + '{"e": "call", "id": "7-2", "t": ')  # a write in progress
    (got,) = calllog.read_calls(tmp_path)
    assert got.id == "7-1" and got.ok is True


def test_read_calls_filters_by_service_and_survives_a_missing_directory(tmp_path: Path) -> None:
    write_lines(tmp_path / "checkout-7.jsonl", [call("7-1", T)])
    write_lines(tmp_path / "billing-8.jsonl", [call("8-1", T, svc="billing")])
    assert [c.id for c in calllog.read_calls(tmp_path, "checkout")] == ["7-1"]
    assert [c.id for c in calllog.read_calls(tmp_path)] == ["7-1", "8-1"]
    assert calllog.read_calls(tmp_path / "nowhere") == []


def test_service_name_and_log_path() -> None:
    assert calllog.service_name({"CHAOS_DYNAMO_SERVICE": "a", "AWS_SDK_UA_APP_ID": "b"}) == "a"
    assert calllog.service_name({"AWS_SDK_UA_APP_ID": "b"}) == "b"
    assert calllog.service_name({}) == "unattributed"
    assert calllog.log_path("/d", "my svc/../x", 5) == Path("/d/my_svc_.._x-5.jsonl")


def test_writers_in_many_threads_never_interleave_lines(tmp_path: Path) -> None:
    writer = calllog.CallLogWriter(tmp_path / "checkout-1.jsonl")
    def work(k: int) -> None:
        for i in range(200):
            writer.write(call(f"{k}-{i}", T + i, op="x" * 500))
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert len(calllog.read_calls(tmp_path)) == 800


# --- callhooks, driven by hand with botocore's event arguments -----------------------------
class Sink:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def write(self, event: dict[str, Any]) -> None:
        self.events.append(event)


class Request:
    def __init__(self, context: dict[str, Any]) -> None:
        self.context = context


class Http:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


@pytest.fixture
def sink() -> Any:
    the_sink = Sink()
    callhooks.install(the_sink, service="checkout", clock=FakeClock(T))
    yield the_sink
    callhooks.uninstall()


def send_attempt(context: dict[str, Any], n: int, status: int | None = None, exception: Exception | None = None,
                 parsed: dict[str, Any] | None = None) -> None:
    context.setdefault("retries", {})["attempt"] = n  # what botocore's Endpoint does
    assert callhooks._on_before_send(request=Request(context), event_name="before-send.dynamodb.GetItem") is None
    response = None if status is None else {"status_code": status, "headers": {}, "body": b""}
    assert callhooks._on_response_received(context=context, response_dict=response, parsed_response=parsed,
                                           exception=exception, event_name="response-received.dynamodb.GetItem") is None


class Model:
    name = "GetItem"


def test_hooks_write_one_event_per_step(sink: Sink) -> None:
    context: dict[str, Any] = {}
    callhooks._on_before_call(context=context, model=Model(), event_name="before-call.dynamodb.GetItem")
    send_attempt(context, 1, 500, parsed={"Error": {"Code": "InternalServerError"}})
    send_attempt(context, 2, 200, parsed={})
    callhooks._on_after_call(context=context, http_response=Http(200), parsed={}, event_name="after-call.dynamodb.GetItem")
    (got,) = calllog.assemble(sink.events)
    assert (got.operation, got.service, got.ok, got.error) == ("GetItem", "checkout", True, None)
    assert [(a.number, a.status, a.error) for a in got.attempts] == [(1, 500, "InternalServerError"), (2, 200, None)]
    assert sink.events[0]["api"] == "dynamodb" and "chaos_dynamo_call" not in context
    assert callhooks.stats() | {"clients": 0} == {"calls": 1, "attempts": 2, "events": 6, "dropped": 0, "clients": 0}


def test_an_http_error_ends_the_call_with_its_aws_error_code(sink: Sink) -> None:
    context: dict[str, Any] = {}
    callhooks._on_before_call(context=context, model=Model(), event_name="before-call.dynamodb.GetItem")
    parsed = {"Error": {"Code": "ProvisionedThroughputExceededException"}}
    send_attempt(context, 1, 400, parsed=parsed)
    callhooks._on_after_call(context=context, http_response=Http(400), parsed=parsed)
    (got,) = calllog.assemble(sink.events)
    assert (got.ok, got.error, got.attempts[0].status) == (False, "ProvisionedThroughputExceededException", 400)


def test_calls_interleaved_in_one_thread_keep_their_own_attempts(sink: Sink) -> None:
    outer: dict[str, Any] = {}
    inner: dict[str, Any] = {}
    callhooks._on_before_call(context=outer, model=Model(), event_name="before-call.dynamodb.GetItem")
    callhooks._on_before_call(context=inner, model=Model(), event_name="before-call.sts.AssumeRole")
    send_attempt(inner, 1, 200, parsed={})
    callhooks._on_after_call(context=inner, http_response=Http(200), parsed={})
    send_attempt(outer, 1, exception=ConnectionError("x"))
    callhooks._on_after_call_error(context=outer, exception=ConnectionError("x"))
    first, second = calllog.assemble(sink.events)
    assert (len(first.attempts), first.ok, first.error) == (1, False, "ConnectionError")
    assert (len(second.attempts), second.ok) == (1, True)


def test_an_exception_after_the_send_closes_the_open_attempt(sink: Sink) -> None:
    context: dict[str, Any] = {"retries": {"attempt": 1}}
    callhooks._on_before_call(context=context, model=Model(), event_name="before-call.dynamodb.GetItem")
    callhooks._on_before_send(request=Request(context))
    callhooks._on_after_call_error(context=context, exception=ValueError("unparseable"))
    (got,) = calllog.assemble(sink.events)
    assert [(a.number, a.error, a.end is not None) for a in got.attempts] == [(1, "ValueError", True)]


def test_a_failing_sink_is_counted_and_never_raises(capsys: pytest.CaptureFixture[str]) -> None:
    class Broken:
        def write(self, event: dict[str, Any]) -> None:
            raise OSError("disk full")

    callhooks.install(Broken(), service="checkout", clock=FakeClock(T))
    try:
        for _ in range(2):
            context: dict[str, Any] = {}
            callhooks._on_before_call(context=context, model=Model(), event_name="before-call.dynamodb.GetItem")
            send_attempt(context, 1, 200, parsed={})
            callhooks._on_after_call(context=context, http_response=Http(200), parsed={})
        assert callhooks.stats()["dropped"] == 8  # every event of both calls
    finally:
        callhooks.uninstall()
    assert capsys.readouterr().err.count("OSError: disk full") == 1


def test_handlers_ignore_calls_they_did_not_see_start(sink: Sink) -> None:
    context: dict[str, Any] = {}
    send_attempt(context, 1, 200, parsed={})
    callhooks._on_after_call(context=context, http_response=Http(200), parsed={})
    callhooks._on_before_send(request=object())
    callhooks._on_after_call(context=None)
    assert sink.events == []


def test_dns_failures_are_told_from_other_connection_errors() -> None:
    from botocore.exceptions import EndpointConnectionError
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    def raised(inner: BaseException) -> EndpointConnectionError:
        try:
            try:
                raise inner
            except BaseException as e:
                raise EndpointConnectionError(endpoint_url="http://x", error=e) from None
        except EndpointConnectionError as outer:
            return outer

    gai = socket.gaierror(-2, "Name or service not known")
    try:
        raise NameResolutionError("x", None, gai) from gai  # type: ignore[arg-type]
    except NameResolutionError as e:
        resolution = e
    assert callhooks.is_dns_failure(raised(resolution))
    assert callhooks.is_dns_failure(raised(gai))
    assert not callhooks.is_dns_failure(raised(NewConnectionError(None, "refused")))  # type: ignore[arg-type]
    assert not callhooks.is_dns_failure(ConnectionRefusedError()) and not callhooks.is_dns_failure(None)


def test_the_process_log_opens_its_file_at_the_first_event(tmp_path: Path) -> None:
    log = callhooks.ProcessLog(tmp_path / "calls", "checkout")
    assert not (tmp_path / "calls").exists()
    log.write(call("1-1", T))
    log.close()
    (path,) = (tmp_path / "calls").iterdir()
    assert path.name.startswith("checkout-") and calllog.read_calls(tmp_path / "calls")[0].id == "1-1"


def _client_call(call_id: str, start: float, ok: bool, *, key: str = "req", th: int = 1,
                 attempts: int = 1, op: str = "GetItem") -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"e": "call", "id": call_id, "t": start, "op": op, "svc": "s",
                                     "pid": 7, "th": th, "key": key}]
    for n in range(1, attempts + 1):
        events.append({"e": "attempt", "id": call_id, "t": start + n * 0.01, "n": n})
        events.append({"e": "outcome", "id": call_id, "t": start + n * 0.01 + 0.001, "n": n,
                       "status": 200 if ok and n == attempts else None,
                       "error": None if ok and n == attempts else "EndpointConnectionError",
                       "dns": not (ok and n == attempts)})
    events.append({"e": "end", "id": call_id, "t": start + 0.5, "ok": ok,
                   "error": None if ok else "EndpointConnectionError"})
    return events


def test_an_application_retry_of_the_same_request_joins_the_failed_call() -> None:
    events = [*_client_call("7-1", 1.0, False, attempts=2), *_client_call("7-2", 2.0, False),
              *_client_call("7-3", 3.0, True)]
    (call,) = calllog.assemble(events)
    assert (call.id, call.client_calls, call.ok, call.end) == ("7-1", 3, True, 3.5)
    assert [a.number for a in call.attempts] == [1, 2, 3, 4]
    assert [a.dns_failure for a in call.attempts] == [True, True, True, False]
    assert len(calllog.assemble(events, join_retries=False)) == 3


@pytest.mark.parametrize("second", [
    {"key": "other"},            # a different request
    {"th": 2},                   # another thread
    {"op": "PutItem"},           # another operation
])
def test_only_a_repetition_of_a_failed_request_in_the_same_thread_is_joined(second: dict[str, Any]) -> None:
    events = [*_client_call("7-1", 1.0, False), *_client_call("7-2", 2.0, True, **second)]
    assert [c.client_calls for c in calllog.assemble(events)] == [1, 1]


def test_a_repetition_long_after_the_failure_is_a_new_logical_call() -> None:
    late = 1.5 + calllog.MAX_RETRY_GAP + 0.1
    events = [*_client_call("7-1", 1.0, False), *_client_call("7-2", late, True)]
    assert [c.client_calls for c in calllog.assemble(events)] == [1, 1]


def test_a_repetition_after_a_success_is_a_new_logical_call() -> None:
    events = [*_client_call("7-1", 1.0, True), *_client_call("7-2", 2.0, True)]
    assert len(calllog.assemble(events)) == 2
