"""Pure pieces behind the lab's availability timeline and injected DynamoDB errors: the
timeline itself, the DNS's side-effect-free address count, the error-code knobs, and what
botocore's own retry rules make of each injectable code."""

from __future__ import annotations

import json
import zlib

import botocore.parsers
import botocore.session
import pytest
from botocore import retryhandler, translate
from botocore.awsrequest import AWSResponse
from botocore.retries import standard

from chaos_dynamo.dns.server import LabDNS
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lab.lab import AvailabilityTimeline, _error_code
from chaos_dynamo.lbfleet._responses import DEFAULT_ERROR_CODES, ERROR_CODES, _dynamodb_error
from chaos_dynamo.lbfleet.proxy import _error_code as lb_error_code
from chaos_dynamo.route53.records import AliasTarget, RecordSet, ZoneSnapshot

ZONE = "example.com."


# --- the timeline ------------------------------------------------------------------------


def test_timeline_appends_only_changes_and_filters_by_endpoint() -> None:
    timeline = AvailabilityTimeline()
    first = timeline.record(10.0, {"a.example.com": 6, "b.example.com": 12})
    assert first == [{"time": 10.0, "endpoint": "a.example.com", "addresses": 6},
                     {"time": 10.0, "endpoint": "b.example.com", "addresses": 12}]
    assert timeline.record(11.0, {"a.example.com": 6, "b.example.com": 12}) == []
    assert timeline.record(12.0, {"a.example.com": 0, "b.example.com": 12}) == [
        {"time": 12.0, "endpoint": "a.example.com", "addresses": 0}]
    timeline.record(13.0, {"a.example.com": 6})
    assert [(e["time"], e["addresses"]) for e in timeline.entries("a.example.com")] == [
        (10.0, 6), (12.0, 0), (13.0, 6)]
    assert [e["time"] for e in timeline.entries("b.example.com")] == [10.0]
    assert len(timeline.entries()) == 4
    timeline.entries()[0]["addresses"] = 99  # callers get copies
    assert timeline.entries()[0]["addresses"] == 6


# --- the DNS's address count -------------------------------------------------------------


def published(records: list[RecordSet]) -> LabDNS:
    dns = LabDNS(seed=3)  # publish and count need no sockets
    dns.publish(ZoneSnapshot("Z1", ZONE, tuple(records)))
    return dns


def plan(name: str, weights: list[int], rtype: str = "A") -> list[RecordSet]:
    prefix = "::ffff:10.0.0." if rtype == "AAAA" else "10.0.0."
    return [RecordSet(name, rtype, 5, (f"{prefix}{i}",), set_identifier=f"lb{i}", weight=w)
            for i, w in enumerate(weights, start=1)]


def test_addresses_count_every_weighted_member_through_the_alias() -> None:
    dns = published([
        RecordSet("ddb.example.com", "A", alias=AliasTarget("Z1", "plan-1.example.com")),
        RecordSet("ddb.example.com", "AAAA", alias=AliasTarget("Z1", "plan-1.example.com")),
        *plan("plan-1.example.com", [3, 1, 0]),  # weight 0: no client can get lb3
        *plan("plan-1.example.com", [1, 1, 1], "AAAA"),
        RecordSet("v4only.example.com", "A", alias=AliasTarget("Z1", "plan-1.example.com")),
        RecordSet("web.example.com", "CNAME", 60, ("v4only.example.com",)),
        RecordSet("two.example.com", "A", 60, ("192.0.2.1", "192.0.2.2")),
        RecordSet("zeros.example.com", "A", 5, ("10.9.0.1",), set_identifier="a", weight=0),
        RecordSet("zeros.example.com", "A", 5, ("10.9.0.2",), set_identifier="b", weight=0),
        RecordSet("empty.example.com", "A", alias=AliasTarget("Z1", "gone.example.com")),
    ])
    assert dns.addresses("ddb.example.com") == 2 + 3
    assert dns.addresses("DDB.example.com.") == 5  # names are case-insensitive
    assert dns.addresses("v4only.example.com") == 2
    assert dns.addresses("web.example.com") == 2  # CNAME followed, as a query is
    assert dns.addresses("two.example.com") == 2
    assert dns.addresses("zeros.example.com") == 2  # all zero: equal chances, as Route 53
    assert dns.addresses("empty.example.com") == 0  # NOERROR, no data
    assert dns.addresses("never.example.com") == 0  # NXDOMAIN
    assert dns.addresses("example.org") == 0  # outside every zone: REFUSED
    assert dns.counters()["total"] == 0  # counting is not a query: nothing logged
    assert dns.query_log() == []


def test_addresses_follow_a_new_publish() -> None:
    alias = RecordSet("ddb.example.com", "A", alias=AliasTarget("Z1", "plan-1.example.com"))
    dns = published([alias, *plan("plan-1.example.com", [1, 1, 1, 1])])
    assert dns.addresses("ddb.example.com") == 4
    dns.publish(ZoneSnapshot("Z1", ZONE, (alias,), serial=2))  # the tree is deleted
    assert dns.addresses("ddb.example.com") == 0
    dns.remove_zone("Z1")
    assert dns.addresses("ddb.example.com") == 0


# --- error codes -------------------------------------------------------------------------


def test_lb_error_code_from_status_or_code() -> None:
    assert lb_error_code(None, None) == "InternalServerError"
    assert lb_error_code(400, None) == "ProvisionedThroughputExceededException"
    assert lb_error_code(None, "ServiceUnavailable") == "ServiceUnavailable"
    assert lb_error_code(400, "ThrottlingException") == "ThrottlingException"
    for status, code, field in ((418, None, "status"), (True, None, "status"),
                                (None, "SlowDown", "code"), (500, "ThrottlingException", "status")):
        with pytest.raises(ConfigError) as info:
            lb_error_code(status, code)
        assert info.value.field == field


def test_faults_body_error_code_names_the_field_and_the_allowed_codes() -> None:
    assert _error_code({}, 0.5) == "InternalServerError"
    assert _error_code({"error_status": 400}, 0.5) == "ProvisionedThroughputExceededException"
    for code in ERROR_CODES:
        assert _error_code({"error_code": code}, 1.0) == code
    assert _error_code({"error_code": "ServiceUnavailable", "error_status": 503}, 1) == "ServiceUnavailable"
    for body, rate, field in (
        ({"error_code": "Throttled"}, 1.0, "faults.error_code"),
        ({"error_code": 400}, 1.0, "faults.error_code"),
        ({"error_code": "ThrottlingException"}, None, "faults.error_code"),
        ({"error_code": "ThrottlingException", "error_status": 500}, 1.0, "faults.error_status"),
        ({"error_status": 503}, 1.0, "faults.error_status"),
    ):
        with pytest.raises(ConfigError) as info:
            _error_code(body, rate)
        assert info.value.field == field, body
        if field == "faults.error_code" and rate is not None:
            assert all(code in str(info.value) for code in ERROR_CODES)


def test_default_codes_are_injectable_codes_with_their_status() -> None:
    assert {ERROR_CODES[code]: code for code in DEFAULT_ERROR_CODES.values()} == DEFAULT_ERROR_CODES


def parsed(code: str) -> tuple[AWSResponse, dict[str, object]]:
    """An injected error as botocore's DynamoDB parser reads it."""
    error = _dynamodb_error(code, "lb-1", "lb-1-1")
    response = AWSResponse("http://lb", error.status, dict(error.headers), None)
    response._content = error.body  # type: ignore[attr-defined]  # botocore reads .content
    model = botocore.session.get_session().get_service_model("dynamodb")
    parser = botocore.parsers.create_parser(model.metadata["protocol"])
    result = parser.parse({"status_code": error.status, "headers": dict(error.headers), "body": error.body},
                          model.operation_model("GetItem").output_shape)
    assert zlib.crc32(error.body) == int(dict(error.headers)["x-amz-crc32"])
    assert json.loads(error.body)["__type"].endswith("#" + code)
    return response, result


@pytest.mark.parametrize("code", list(ERROR_CODES))
def test_botocore_retries_every_injectable_code(code: str) -> None:
    """Read from botocore's own rules: standard/adaptive retry conditions and legacy
    ``_retry.json`` for DynamoDB; the two 400s count as throttling."""
    response, result = parsed(code)
    assert result["Error"]["Code"] == code
    assert result["ResponseMetadata"]["HTTPStatusCode"] == ERROR_CODES[code]

    context = standard.RetryContext(attempt_number=1, parsed_response=result, http_response=response)
    assert standard.StandardRetryConditions(max_attempts=3).is_retryable(context)
    throttling = standard.ThrottledRetryableChecker().is_retryable(context)
    assert throttling == (ERROR_CODES[code] == 400)

    loader = botocore.session.get_session().get_component("data_loader")
    retry = loader.load_data("_retry")
    config = translate.build_retry_config("dynamodb", retry["retry"], retry.get("definitions", {}))
    checker = retryhandler.create_checker_from_retry_config(config, operation_name="GetItem")
    assert checker(attempt_number=1, response=(response, result), caught_exception=None,
                   retries_context={})
