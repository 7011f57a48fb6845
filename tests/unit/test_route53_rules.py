"""Route 53 change-batch rules and REST-XML codec, checked against botocore's own code.

The rule cases live in tests/route53_cases.py as data (shared with the HTTP runners);
here they run against the pure ``apply_changes``. The codec is proven with botocore's real
serializer (what boto3 sends) and real parser (what boto3 makes of the lab's answers).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import ClientError, ParamValidationError
from botocore.model import OperationModel, ServiceModel
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

from chaos_dynamo.errors import AwsError, InvalidChangeBatch
from chaos_dynamo.route53 import xmlcodec
from chaos_dynamo.route53.records import AliasTarget, RecordKey, RecordSet, index_records
from chaos_dynamo.route53.rules import (
    Change,
    apply_changes,
    change_from_api,
    constraint_error,
    diff,
    provided_fields,
    range_error,
    records_equal,
)
from tests.route53_cases import (
    CASES,
    Case,
    create,
    default_apex_records,
    record_key,
    record_matches,
    rrset,
    substitute_zone_id,
)

ZONE_ID = "ZLAB00000000001"


# --- the case table against the pure rules ---------------------------------------------------

def _zone_with(case: Case) -> dict[RecordKey, RecordSet]:
    """The zone before the batch, built the way an HTTP runner builds it: by CREATEs."""
    zone = index_records(RecordSet.from_api(d) for d in default_apex_records(case.zone))
    for record in substitute_zone_id(case.initial, ZONE_ID):
        zone = apply_changes(case.zone, zone, [change_from_api(create(record))], zone_id=ZONE_ID)
    return zone


def _messages(error: AwsError) -> list[str]:
    return error.messages if isinstance(error, InvalidChangeBatch) else [error.aws_message]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case) -> None:
    current = _zone_with(case)
    before = {k: v.to_api() for k, v in current.items()}
    error: AwsError | None = None
    result = current
    try:
        changes = [change_from_api(c) for c in substitute_zone_id(case.changes, ZONE_ID)]
        result = apply_changes(case.zone, current, changes, zone_id=ZONE_ID)
    except AwsError as exc:
        error = exc

    assert {k: v.to_api() for k, v in current.items()} == before, "current was mutated"
    if case.error_code is None:
        assert error is None, f"unexpected {error}"
    else:
        assert error is not None, "batch was accepted"
        assert error.code == case.error_code
        for expected in case.messages:
            assert any(expected in m for m in _messages(error)), (expected, _messages(error))
    listed = [r.to_api() for r in result.values()]
    for expected in substitute_zone_id(case.present, ZONE_ID):
        assert any(record_matches(expected, actual) for actual in listed), expected
    keys = {record_key(actual) for actual in listed}
    for absent in case.absent:
        assert absent not in keys


def test_case_table_is_broad_and_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 30
    assert {c.error_code for c in CASES} == {None, "InvalidChangeBatch", "InvalidInput"}


def test_one_message_per_failing_change_in_order() -> None:
    zone = _zone_with(Case("x", [], initial=[rrset("www.example.com.", "A", "192.0.2.1")]))
    changes = [
        change_from_api(create(rrset("www.example.com.", "A", "192.0.2.1"))),
        change_from_api(create(rrset("ok.example.com.", "A", "192.0.2.1"))),
        change_from_api(create(rrset("x.example.org.", "A", "192.0.2.1"))),
    ]
    with pytest.raises(InvalidChangeBatch) as info:
        apply_changes("example.com", zone, changes)
    assert [m.split(" ")[0] for m in info.value.messages] == ["Tried", "RRSet"]


def test_validation_errors_are_counted_together() -> None:
    changes = [
        change_from_api(create(rrset("a.example.com.", "A", "192.0.2.1", SetIdentifier="a", Weight=300))),
        change_from_api(create(rrset("b.example.com.", "A", "192.0.2.1", ttl=-5))),
    ]
    with pytest.raises(AwsError) as info:
        apply_changes("example.com.", {}, changes)
    assert info.value.code == "InvalidInput"
    assert info.value.aws_message.startswith("2 validation errors detected: ")
    assert "changes.2.member.resourceRecordSet.tTL" in info.value.aws_message


def test_validation_error_helpers_word_errors_as_aws() -> None:
    """Shared with the health-check rules (one wording for every request-model error)."""
    assert constraint_error("x", "healthCheckConfig.type", "satisfy enum value set: [A]") == (
        "Value 'x' at 'healthCheckConfig.type' failed to satisfy constraint: Member must "
        "satisfy enum value set: [A]")
    assert range_error(None, "p", 1, 10) == [] and range_error(5, "p", 1, 10) == []
    assert range_error(11, "p", 1, 10) == [
        "Value '11' at 'p' failed to satisfy constraint: Member must have value less than or equal to 10"]
    assert range_error(0, "p", 1, 10) == [
        "Value '0' at 'p' failed to satisfy constraint: Member must have value greater than or equal to 1"]


def test_alias_target_not_checked_without_zone_id() -> None:
    alias = RecordSet("api.example.com.", "A", alias=AliasTarget(ZONE_ID, "gone.example.com."))
    result = apply_changes("example.com.", {}, [Change("CREATE", alias)])
    assert alias.key in result


def test_alias_target_in_another_zone_not_checked() -> None:
    alias = RecordSet("api.example.com.", "A", alias=AliasTarget("/hostedzone/ZOTHER", "x.example.net."))
    assert alias.key in apply_changes("example.com.", {}, [Change("CREATE", alias)], zone_id=ZONE_ID)


# --- Change / change_from_api ------------------------------------------------------------

def test_change_from_api_records_what_was_provided() -> None:
    c = change_from_api({"Action": "DELETE", "ResourceRecordSet": {
        "Name": "WWW.Example.com", "Type": "a", "TTL": 0, "SetIdentifier": "s",
        "MultiValueAnswer": False, "ResourceRecords": [{"Value": "192.0.2.1"}],
    }})
    assert c.action == "DELETE"
    assert c.record.key == ("www.example.com.", "A", "s")
    assert c.record.ttl == 0 and c.record.multivalue_answer is False
    assert c.provided == {"Name", "Type", "TTL", "SetIdentifier", "MultiValueAnswer", "ResourceRecords"}


def test_change_from_api_keeps_unknown_fields_as_extra() -> None:
    c = change_from_api(create(rrset("www.example.com.", "A", "192.0.2.1", SetIdentifier="eu",
                                     GeoLocation={"ContinentCode": "EU"})))
    assert dict(c.record.extra) == {"GeoLocation": {"ContinentCode": "EU"}}
    assert "GeoLocation" in c.provided


@pytest.mark.parametrize("bad", [
    {"Action": "CREATE"},
    {"Action": "CREATE", "ResourceRecordSet": {"Type": "A"}},
    {"Action": "CREATE", "ResourceRecordSet": {"Name": "a.example.com."}},
    {"Action": "CREATE", "ResourceRecordSet": {"Name": "a.", "Type": "A", "TTL": "soon"}},
])
def test_change_from_api_rejects_structure(bad: dict[str, Any]) -> None:
    with pytest.raises(AwsError) as info:
        change_from_api(bad)
    assert info.value.code == "InvalidInput"


def test_change_built_in_code_derives_provided() -> None:
    record = RecordSet("www.example.com.", "A", ttl=60, values=("192.0.2.1",), set_identifier="s", weight=5)
    assert Change("UPSERT", record).provided == provided_fields(record) == {
        "Name", "Type", "TTL", "ResourceRecords", "SetIdentifier", "Weight"}


# --- records_equal and diff --------------------------------------------------------------

def _rs(name: str, *values: str, ttl: int = 60, **kw: Any) -> RecordSet:
    return RecordSet(name, "A", ttl=ttl, values=values, **kw)


def test_records_equal_compares_values_as_a_set() -> None:
    assert records_equal(_rs("a.example.com.", "192.0.2.1", "192.0.2.2"), _rs("A.example.com", "192.0.2.2", "192.0.2.1"))
    assert not records_equal(_rs("a.example.com.", "192.0.2.1"), _rs("a.example.com.", "192.0.2.1", ttl=61))
    assert not records_equal(_rs("a.example.com.", "192.0.2.1", set_identifier="s", weight=1),
                             _rs("a.example.com.", "192.0.2.1", set_identifier="s", weight=2))
    geo_eu = _rs("a.example.com.", "192.0.2.1", extra=(("GeoLocation", {"ContinentCode": "EU"}),))
    geo_na = _rs("a.example.com.", "192.0.2.1", extra=(("GeoLocation", {"ContinentCode": "NA"}),))
    assert geo_eu == geo_na  # the dataclass ignores extra...
    assert not records_equal(geo_eu, geo_na)  # ...Route 53 does not


def test_diff_removed_and_changed_sorted() -> None:
    keep = _rs("keep.example.com.", "192.0.2.1")
    gone = _rs("gone.example.com.", "192.0.2.1")
    moved_old, moved_new = _rs("b.example.com.", "192.0.2.1"), _rs("b.example.com.", "192.0.2.9")
    reordered_old = _rs("c.example.com.", "192.0.2.1", "192.0.2.2")
    reordered_new = _rs("c.example.com.", "192.0.2.2", "192.0.2.1")
    weighted = _rs("b.example.com.", "192.0.2.5", set_identifier="w", weight=1)
    new_one = _rs("a.example.com.", "192.0.2.1")
    old = index_records([keep, gone, moved_old, reordered_old])
    new = index_records([keep, moved_new, reordered_new, weighted, new_one])
    removed, changed = diff(old, new)
    assert removed == [gone]
    assert [r.key for r in changed] == [new_one.key, moved_new.key, weighted.key]
    assert changed[1].values == ("192.0.2.9",)
    assert diff(new, new) == ([], [])


# --- XML: what boto3 sends -----------------------------------------------------------------

@pytest.fixture(scope="module")
def route53_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("route53")


def _op(model: ServiceModel, name: str) -> OperationModel:
    return model.operation_model(name)


def _boto3_body(model: ServiceModel, changes: list[dict[str, Any]], comment: str | None = None) -> bytes:
    batch: dict[str, Any] = {"Changes": changes}
    if comment is not None:
        batch["Comment"] = comment
    request = create_serializer("rest-xml").serialize_to_request(
        {"HostedZoneId": "Z1", "ChangeBatch": batch}, _op(model, "ChangeResourceRecordSets"))
    body = request["body"]
    return body if isinstance(body, bytes) else str(body).encode("utf-8")


def _same(a: Change, b: Change) -> bool:
    return (a.action, a.provided, a.record.to_api()) == (b.action, b.provided, b.record.to_api())


def test_parse_what_boto3_sends_every_field(route53_model: ServiceModel) -> None:
    changes = [
        {"Action": "CREATE", "ResourceRecordSet": {
            "Name": "www.example.com.", "Type": "A", "SetIdentifier": "eu", "TTL": 60,
            "ResourceRecords": [{"Value": "192.0.2.1"}, {"Value": "192.0.2.2"}],
            "HealthCheckId": "hc-1", "MultiValueAnswer": False,
            "GeoLocation": {"ContinentCode": "EU"},
            "CidrRoutingConfig": {"CollectionId": "c-1", "LocationName": "office"},
        }},
        {"Action": "UPSERT", "ResourceRecordSet": {
            "Name": "api.example.com.", "Type": "A", "SetIdentifier": "primary", "Failover": "PRIMARY",
            "AliasTarget": {"HostedZoneId": "Z2", "DNSName": "LB.Example.net", "EvaluateTargetHealth": True},
        }},
        {"Action": "DELETE", "ResourceRecordSet": {
            "Name": "geo.example.com.", "Type": "TXT", "SetIdentifier": "r", "Region": "us-east-1",
            "TTL": 0, "ResourceRecords": [{"Value": '"a b" "c"'}],
            "GeoProximityLocation": {"Coordinates": {"Latitude": "47.6", "Longitude": "-122.3"}, "Bias": -10},
        }},
        {"Action": "CREATE", "ResourceRecordSet": {
            "Name": "w.example.com.", "Type": "CNAME", "SetIdentifier": "w", "Weight": 255, "TTL": 5,
            "ResourceRecords": [{"Value": "x.example.net."}]}},
    ]
    comment, parsed = xmlcodec.parse_change_batch(_boto3_body(route53_model, changes, "plan 42 <&>"))
    assert comment == "plan 42 <&>"
    expected = [change_from_api(c) for c in changes]
    assert all(_same(p, e) for p, e in zip(parsed, expected, strict=True))
    assert dict(parsed[0].record.extra)["CidrRoutingConfig"] == {"CollectionId": "c-1", "LocationName": "office"}
    assert dict(parsed[2].record.extra)["GeoProximityLocation"]["Bias"] == -10
    assert parsed[1].record.alias == AliasTarget("Z2", "lb.example.net.", True)
    assert parsed[2].record.values == ('"a b" "c"',)


def test_parse_every_case_batch_as_boto3_sends_it(route53_model: ServiceModel) -> None:
    """Also checks each case's ``botocore_rejects`` flag against botocore's validator."""
    for case in CASES:
        changes = substitute_zone_id(case.changes, ZONE_ID)
        try:
            body = _boto3_body(route53_model, changes)
        except ParamValidationError:
            assert case.botocore_rejects, case.id
            continue
        assert not case.botocore_rejects, case.id
        comment, parsed = xmlcodec.parse_change_batch(body)
        assert comment is None
        assert all(_same(p, change_from_api(c)) for p, c in zip(parsed, changes, strict=True)), case.id


def test_parse_without_namespace_and_empty_changes() -> None:
    body = b"<ChangeResourceRecordSetsRequest><ChangeBatch><Changes/></ChangeBatch></ChangeResourceRecordSetsRequest>"
    assert xmlcodec.parse_change_batch(body) == (None, [])


@pytest.mark.parametrize(("body", "code"), [
    (b"<ChangeResourceRecordSetsRequest><ChangeBatch>", "InvalidInput"),
    (b"not xml at all", "InvalidInput"),
    (b"<CreateHostedZoneRequest/>", "MalformedInput"),
    (b"<ChangeResourceRecordSetsRequest/>", "InvalidInput"),
    (b"<ChangeResourceRecordSetsRequest><ChangeBatch><Changes><Change><Action>CREATE</Action>"
     b"<ResourceRecordSet><Name>a.</Name><Type>A</Type><TTL>soon</TTL></ResourceRecordSet>"
     b"</Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>", "InvalidInput"),
    (b"<ChangeResourceRecordSetsRequest><ChangeBatch><Changes><Change><Action>CREATE</Action>"
     b"<ResourceRecordSet><Name>a.</Name><Type>A</Type><MultiValueAnswer>yes</MultiValueAnswer>"
     b"</ResourceRecordSet></Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>", "InvalidInput"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><ChangeResourceRecordSetsRequest/>', "InvalidInput"),
])
def test_parse_rejects_malformed(body: bytes, code: str) -> None:
    with pytest.raises(AwsError) as info:
        xmlcodec.parse_change_batch(body)
    assert info.value.code == code
    assert info.value.aws_message


# --- XML: what boto3 makes of the lab's answers ----------------------------------------------

def _parse(model: ServiceModel, operation: str, body: bytes, status: int) -> dict[str, Any]:
    response = {"body": body, "headers": {"x-amzn-requestid": "req-1"}, "status_code": status}
    shape = _op(model, operation).output_shape
    assert shape is not None
    parsed: dict[str, Any] = create_parser("rest-xml").parse(response, shape)
    return parsed


MESSAGES = [
    "Tried to delete resource record set [name='lock.example.com.', type='TXT'] but the values "
    "provided do not match the current values",
    "Tried to create resource record set [name='lock.example.com.', type='TXT'] but it already exists",
]


def test_invalid_change_batch_body_parses_as_aws_error(route53_model: ServiceModel) -> None:
    body = xmlcodec.aws_error_xml(InvalidChangeBatch(MESSAGES), "req-1")
    parsed = _parse(route53_model, "ChangeResourceRecordSets", body, 400)
    assert parsed["Error"]["Code"] == "InvalidChangeBatch"
    assert parsed["Error"]["Message"] == "[" + ", ".join(MESSAGES) + "]"
    assert parsed["ResponseMetadata"]["RequestId"] == "req-1"


def test_documented_messages_body_would_lose_the_code(route53_model: ServiceModel) -> None:
    """Negative control: the API reference's <InvalidChangeBatch><Messages> shape."""
    body = (b'<?xml version="1.0"?><InvalidChangeBatch xmlns="' + xmlcodec.NAMESPACE.encode() +
            b'"><Messages><Message>a</Message><Message>b</Message></Messages>'
            b"<RequestId>req-1</RequestId></InvalidChangeBatch>")
    parsed = _parse(route53_model, "ChangeResourceRecordSets", body, 400)
    assert parsed["Error"]["Code"] == ""


@pytest.fixture
def canned_client() -> Iterator[tuple[Any, list[tuple[int, bytes]]]]:
    """A real boto3 Route 53 client whose HTTP answers come from a list (no sockets)."""
    client = boto3.client("route53", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    answers: list[tuple[int, bytes]] = []

    class _Raw:
        def __init__(self, body: bytes) -> None:
            self._body = body

        def stream(self, **_: Any) -> Iterator[bytes]:
            yield self._body

    def reply(request: Any, **_: Any) -> AWSResponse:
        status, body = answers.pop(0)
        headers = HTTPHeaders()
        headers["Content-Type"] = "text/xml"
        headers["x-amzn-requestid"] = "req-1"
        return AWSResponse(request.url, status, headers, _Raw(body))

    client.meta.events.register("before-send.route53", reply)  # type: ignore[arg-type]
    yield client, answers
    client.close()


def test_boto3_raises_invalid_change_batch_with_every_message(canned_client: Any) -> None:
    client, answers = canned_client
    answers.append((400, xmlcodec.aws_error_xml(InvalidChangeBatch(MESSAGES), "req-1")))
    with pytest.raises(client.exceptions.InvalidChangeBatch) as info:
        client.change_resource_record_sets(HostedZoneId="Z1", ChangeBatch={"Changes": [
            create(rrset("lock.example.com.", "TXT", '"x"'))]})
    error: ClientError = info.value
    assert error.response["Error"]["Code"] == "InvalidChangeBatch"
    assert all(m in error.response["Error"]["Message"] for m in MESSAGES)
    translated = AwsError.from_client_error(error)
    assert isinstance(translated, InvalidChangeBatch) and MESSAGES[1] in translated.aws_message


def test_error_xml_brackets_invalid_change_batch_and_escapes(route53_model: ServiceModel) -> None:
    body = xmlcodec.error_xml("InvalidChangeBatch", "a <b> & 'c'", "req-1")
    assert _parse(route53_model, "ChangeResourceRecordSets", body, 400)["Error"]["Message"] == "[a <b> & 'c']"


def test_error_xml_other_codes(route53_model: ServiceModel) -> None:
    body = xmlcodec.aws_error_xml(AwsError("InvalidInput", "Invalid request: x"), "req-2")
    error = _parse(route53_model, "ChangeResourceRecordSets", body, 400)["Error"]
    assert (error["Code"], error["Message"], error["Type"]) == ("InvalidInput", "Invalid request: x", "Sender")
    body = xmlcodec.error_xml("InternalFailure", "boom", "req-3", sender=False)
    assert _parse(route53_model, "GetChange", body, 500)["Error"]["Type"] == "Receiver"


@pytest.mark.parametrize(("operation", "root"), [
    ("ChangeResourceRecordSets", "ChangeResourceRecordSetsResponse"),
    ("GetChange", "GetChangeResponse"),
])
def test_change_info_parses_as_boto3_change_info(route53_model: ServiceModel, operation: str, root: str) -> None:
    at = datetime(2025, 10, 20, 6, 48, 26, 123456, tzinfo=UTC)
    body = xmlcodec.change_info_xml("C00001ABCDEFGH", "PENDING", at, "plan 42", root=root)
    info = _parse(route53_model, operation, body, 200)["ChangeInfo"]
    assert info == {"Id": "/change/C00001ABCDEFGH", "Status": "PENDING",
                    "SubmittedAt": at.replace(microsecond=123000), "Comment": "plan 42"}


def test_change_info_through_boto3(canned_client: Any) -> None:
    client, answers = canned_client
    at = datetime(2025, 10, 20, 6, 48, 26)  # naive: taken as UTC
    answers.append((200, xmlcodec.change_info_xml("/change/C2", "INSYNC", at, None, root="GetChangeResponse")))
    info = client.get_change(Id="/change/C2")["ChangeInfo"]
    assert info["Id"] == "/change/C2" and info["Status"] == "INSYNC"
    assert info["SubmittedAt"] == at.replace(tzinfo=UTC)
    assert "Comment" not in info
