"""Route 53's REST-XML, as boto3 sends and parses it, for the lab's HTTP front.

Only what the lab reads or answers itself: the ``ChangeResourceRecordSets`` request, the
``ChangeInfo`` responses of that call and of ``GetChange``, the ``CreateHealthCheck`` and
``UpdateHealthCheck`` requests (checked by the lab before the emulator stores them), the
``GetHealthCheckStatus`` and ``GetHealthCheckLastFailureReason`` responses, and error
bodies. Everything else is proxied to the emulator untouched.

Error bodies use the shape Route 53 sends today, ``<ErrorResponse><Error>`` with ``Type``,
``Code``, ``Message``, and ``RequestId`` beside it, for every code including
``InvalidChangeBatch``, whose message is the bracketed, comma-separated list of the
failing changes' messages (``[msg1, msg2]``). The older, documented
``<InvalidChangeBatch><Messages>`` body is not used: botocore's rest-xml parser reads the
error code from ``Error/Code`` only, so a client would get a ``ClientError`` with an empty
code (tests/unit/test_route53_rules.py shows both).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chaos_dynamo.errors import AwsError, InvalidChangeBatch
from chaos_dynamo.route53.rules import Change, change_from_api

__all__ = [
    "NAMESPACE",
    "Observation",
    "aws_error_xml",
    "change_info_xml",
    "error_xml",
    "health_check_observations_xml",
    "invalid_change_batch_message",
    "parse_change_batch",
    "parse_create_health_check",
    "parse_update_health_check",
]

NAMESPACE = "https://route53.amazonaws.com/doc/2013-04-01/"
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'

_TEXT_FIELDS = frozenset({
    "Name", "Type", "SetIdentifier", "Region", "Failover", "HealthCheckId",
    "TrafficPolicyInstanceId",
})
_INT_FIELDS = frozenset({"TTL", "Weight"})
_INT_LEAVES = frozenset({"Bias"})
"""Integer leaves inside record-set members the lab does not model (GeoProximityLocation)."""


# --- request ------------------------------------------------------------------------------

def parse_change_batch(body: bytes) -> tuple[str | None, list[Change]]:
    """Parse a ``ChangeResourceRecordSetsRequest`` body into (comment, changes).

    Record-set members the lab does not model (``GeoLocation``, ``CidrRoutingConfig``,
    ``GeoProximityLocation``...) are kept as parsed dicts in ``RecordSet.extra``, so they
    reach the emulator and take part in DELETE matching.

    Raises:
        AwsError: ``InvalidInput`` for XML that does not parse or lacks a required element
            or holds a bad number or boolean; ``MalformedInput`` for another document.
    """
    root = _parse_xml(body)
    if _local(root.tag) != "ChangeResourceRecordSetsRequest":
        raise AwsError("MalformedInput", "ChangeBatch is not valid, expected ChangeResourceRecordSetsRequest")
    batch = _required(root, "ChangeBatch")
    comment_el = _child(batch, "Comment")
    comment = (comment_el.text or "") if comment_el is not None else None
    changes = [change_from_api(_change_dict(el)) for el in _children(_required(batch, "Changes"), "Change")]
    return comment, changes


def _parse_xml(body: bytes, expected: str = "ChangeResourceRecordSetsRequest") -> ET.Element:
    # A DOCTYPE is the door to entity expansion; Route 53 requests never carry one.
    if b"<!DOCTYPE" in body[:1024].upper():
        raise AwsError("InvalidInput", "Invalid XML ; DOCTYPE is not allowed in a Route 53 request")
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise AwsError("InvalidInput", f"Invalid XML ; {exc}; send a {expected} document") from None


def _local(tag: str) -> str:
    """``{namespace}Name`` -> ``Name``."""
    return tag.rsplit("}", 1)[-1]


def _children(parent: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in parent if _local(el.tag) == name]


def _child(parent: ET.Element, name: str) -> ET.Element | None:
    found = _children(parent, name)
    return found[0] if found else None


def _required(parent: ET.Element, name: str) -> ET.Element:
    found = _child(parent, name)
    if found is None:
        raise AwsError("InvalidInput", f"Invalid XML ; element '{_local(parent.tag)}' must contain '{name}'")
    return found


def _change_dict(el: ET.Element) -> dict[str, Any]:
    action = _child(el, "Action")
    rrset = _required(el, "ResourceRecordSet")
    return {
        "Action": (action.text or "") if action is not None else "",
        "ResourceRecordSet": _rrset_dict(rrset),
    }


def _rrset_dict(el: ET.Element) -> dict[str, Any]:
    """The boto3 ``ResourceRecordSet`` dict for one element, typed as boto3 types it."""
    out: dict[str, Any] = {}
    for child in el:
        name = _local(child.tag)
        text = child.text or ""
        if name in _TEXT_FIELDS:
            out[name] = text
        elif name in _INT_FIELDS:
            out[name] = _int(name, text)
        elif name == "MultiValueAnswer":
            out[name] = _bool(name, text)
        elif name == "ResourceRecords":
            out[name] = [{"Value": _text_of(rr, "Value")} for rr in _children(child, "ResourceRecord")]
        elif name == "AliasTarget":
            out[name] = {
                "HostedZoneId": _text_of(child, "HostedZoneId"),
                "DNSName": _text_of(child, "DNSName"),
                "EvaluateTargetHealth": _bool("EvaluateTargetHealth", _text_of(child, "EvaluateTargetHealth")),
            }
        else:
            out[name] = _generic(child)
    return out


def _text_of(parent: ET.Element, name: str) -> str:
    return _required(parent, name).text or ""


def _int(name: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise AwsError("InvalidInput", f"Invalid XML ; '{text}' is not a valid integer for '{name}'") from None


def _bool(name: str, text: str) -> bool:
    value = text.strip()
    if value not in ("true", "false"):
        raise AwsError("InvalidInput", f"Invalid XML ; '{text}' is not a valid boolean for '{name}' (true or false)")
    return value == "true"


def _generic(el: ET.Element) -> Any:
    """An unmodelled element as boto3 would hand it over: dicts of strings (Bias an int)."""
    if len(el) == 0:
        text = el.text or ""
        return _int(_local(el.tag), text) if _local(el.tag) in _INT_LEAVES else text
    out: dict[str, Any] = {}
    for child in el:
        key, value = _local(child.tag), _generic(child)
        if key in out:
            previous = out[key]
            out[key] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            out[key] = value
    return out


# --- health-check requests -----------------------------------------------------------------

_HC_INT_FIELDS = frozenset({"Port", "RequestInterval", "FailureThreshold", "HealthThreshold", "HealthCheckVersion"})
_HC_BOOL_FIELDS = frozenset({"MeasureLatency", "Inverted", "Disabled", "EnableSNI"})
_HC_LIST_FIELDS = {"ChildHealthChecks": "ChildHealthCheck", "Regions": "Region",
                   "ResetElements": "ResettableElementName"}


def parse_create_health_check(body: bytes) -> tuple[str, dict[str, Any]]:
    """Parse a ``CreateHealthCheckRequest`` body into (caller reference, HealthCheckConfig).

    The config is the dict boto3 would have been given (``Port`` an int, ``Inverted`` a
    bool, ``Regions`` a list...), so the lab checks exactly what the caller sent.

    Raises:
        AwsError: ``InvalidInput`` for XML that does not parse, lacks ``CallerReference`` or
            ``HealthCheckConfig``, or holds a bad number or boolean; ``MalformedInput`` for
            another document.
    """
    root = _parse_xml(body, "CreateHealthCheckRequest")
    if _local(root.tag) != "CreateHealthCheckRequest":
        raise AwsError("MalformedInput", "Expected a CreateHealthCheckRequest document")
    caller_reference = _text_of(root, "CallerReference")
    return caller_reference, _health_check_fields(_required(root, "HealthCheckConfig"))


def parse_update_health_check(body: bytes) -> dict[str, Any]:
    """Parse an ``UpdateHealthCheckRequest`` body into the fields it sets, typed as boto3
    types them (``ResetElements`` a list of element names); fields not sent are absent.

    Raises:
        AwsError: as :func:`parse_create_health_check`.
    """
    root = _parse_xml(body, "UpdateHealthCheckRequest")
    if _local(root.tag) != "UpdateHealthCheckRequest":
        raise AwsError("MalformedInput", "Expected an UpdateHealthCheckRequest document")
    return _health_check_fields(root)


def _health_check_fields(el: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in el:
        name = _local(child.tag)
        text = child.text or ""
        if name in _HC_INT_FIELDS:
            out[name] = _int(name, text)
        elif name in _HC_BOOL_FIELDS:
            out[name] = _bool(name, text)
        elif name in _HC_LIST_FIELDS:
            out[name] = [item.text or "" for item in _children(child, _HC_LIST_FIELDS[name])]
        elif len(child) == 0:
            out[name] = text
        else:
            out[name] = _generic(child)  # AlarmIdentifier: {"Region", "Name"}
    return out


# --- responses ---------------------------------------------------------------------------

def _document(root: ET.Element) -> bytes:
    return _DECLARATION + ET.tostring(root, encoding="unicode").encode("utf-8")


def _sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
    el = ET.SubElement(parent, tag)
    el.text = text
    return el


def _timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as Route 53 writes SubmittedAt."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def change_info_xml(
    change_id: str,
    status: str,
    submitted_at: datetime,
    comment: str | None,
    root: str = "ChangeResourceRecordSetsResponse",
) -> bytes:
    """A ``ChangeInfo`` response body (also ``root="GetChangeResponse"``).

    ``change_id`` may be bare (``C123``) or qualified (``/change/C123``); Route 53 answers
    with the qualified form. A naive ``submitted_at`` is taken as UTC.
    """
    doc = ET.Element(root, xmlns=NAMESPACE)
    info = ET.SubElement(doc, "ChangeInfo")
    _sub(info, "Id", change_id if change_id.startswith("/change/") else f"/change/{change_id}")
    _sub(info, "Status", status)
    _sub(info, "SubmittedAt", _timestamp(submitted_at))
    if comment is not None:
        _sub(info, "Comment", comment)
    return _document(doc)


def invalid_change_batch_message(messages: Sequence[str]) -> str:
    """The one ``Message`` Route 53 sends for a rejected batch: ``[msg1, msg2]``."""
    return "[" + ", ".join(messages) + "]"


def error_xml(code: str, message: str, request_id: str, sender: bool = True) -> bytes:
    """An ``ErrorResponse`` body that botocore turns into ``ClientError(code, message)``.

    An ``InvalidChangeBatch`` message not already in brackets is wrapped in them, because
    Route 53 always sends that code's messages as a bracketed list and clients (Terraform,
    external-dns) print it that way.
    """
    if code == "InvalidChangeBatch" and not message.startswith("["):
        message = f"[{message}]"
    doc = ET.Element("ErrorResponse", xmlns=NAMESPACE)
    error = ET.SubElement(doc, "Error")
    _sub(error, "Type", "Sender" if sender else "Receiver")
    _sub(error, "Code", code)
    _sub(error, "Message", message)
    _sub(doc, "RequestId", request_id)
    return _document(doc)


def aws_error_xml(error: AwsError, request_id: str) -> bytes:
    """:func:`error_xml` for an :class:`AwsError`, listing every message of a rejected batch."""
    if isinstance(error, InvalidChangeBatch):
        return error_xml(error.code, invalid_change_batch_message(error.messages), request_id)
    return error_xml(error.code, error.aws_message, request_id)


@dataclass(frozen=True)
class Observation:
    """One checker's report in ``GetHealthCheckStatus`` / ``GetHealthCheckLastFailureReason``."""

    region: str
    ip_address: str
    status: str
    checked_at: datetime


def health_check_observations_xml(
    observations: Sequence[Observation], root: str = "GetHealthCheckStatusResponse",
) -> bytes:
    """A ``HealthCheckObservations`` response (also ``root="GetHealthCheckLastFailureReasonResponse"``)."""
    doc = ET.Element(root, xmlns=NAMESPACE)
    items = ET.SubElement(doc, "HealthCheckObservations")
    for observation in observations:
        item = ET.SubElement(items, "HealthCheckObservation")
        _sub(item, "Region", observation.region)
        _sub(item, "IPAddress", observation.ip_address)
        report = ET.SubElement(item, "StatusReport")
        _sub(report, "Status", observation.status)
        _sub(report, "CheckedTime", _timestamp(observation.checked_at))
    return _document(doc)
