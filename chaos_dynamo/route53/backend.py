"""The boto3 adapter between the lab's Route 53 rules and the emulator that stores records.

The lab decides what a change batch does (``rules.apply_changes``); this adapter makes the
emulator hold exactly the resulting records. moto's own change handling is not AWS's (a
DELETE by set identifier removes that identifier under every name, a DELETE is checked
against past changes rather than current records), so the adapter *converges*: it writes
the difference, reads the zone back, and repairs what the emulator got wrong, a bounded
number of times. Against a faithful backend (LocalStack, MiniStack) the first round is
already exact.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from chaos_dynamo.errors import AwsError, LabError
from chaos_dynamo.route53.records import RecordKey, RecordSet, index_records, strip_zone_prefix
from chaos_dynamo.route53.rules import diff

CONVERGE_ROUNDS = 4


def make_client(service: str, endpoint_url: str, region: str) -> Any:
    """A boto3 client for the lab's emulator: dummy credentials, quick failure, no retries."""
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


def _unmangle(record: dict[str, Any]) -> dict[str, Any]:
    """Repair moto's listing of the apex SOA, whose value it renders as a Python dict's repr."""
    values = record.get("ResourceRecords")
    if not values:
        return record
    fixed = []
    for item in values:
        value = item.get("Value", "")
        if isinstance(value, str) and value.startswith("{'Value': "):
            try:
                parsed = ast.literal_eval(value)
                value = str(parsed.get("Value", value)) if isinstance(parsed, dict) else value
            except (ValueError, SyntaxError):
                pass
        fixed.append({"Value": value})
    return {**record, "ResourceRecords": fixed}


def iter_record_sets(client: Any, zone_id: str, start_name: str | None = None) -> Iterator[RecordSet]:
    """Record sets of a zone in Route 53's order, from ``start_name`` on, across pages."""
    kwargs: dict[str, Any] = {"HostedZoneId": zone_id, "MaxItems": "300"}
    if start_name:
        kwargs["StartRecordName"] = start_name
    try:
        while True:
            page = client.list_resource_record_sets(**kwargs)
            for data in page.get("ResourceRecordSets", []):
                yield RecordSet.from_api(_unmangle(data))
            if not page.get("IsTruncated"):
                return
            kwargs["StartRecordName"] = page["NextRecordName"]
            kwargs["StartRecordType"] = page["NextRecordType"]
            if page.get("NextRecordIdentifier"):
                kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]
            else:
                kwargs.pop("StartRecordIdentifier", None)
    except ClientError as exc:
        raise AwsError.from_client_error(exc, "ListResourceRecordSets") from exc


class Route53Backend:
    """Reads and writes hosted zones and record sets on the emulator."""

    def __init__(self, endpoint_url: str, region: str = "us-east-1") -> None:
        self.endpoint_url = endpoint_url
        self._client = make_client("route53", endpoint_url, region)

    def list_zones(self) -> list[tuple[str, str]]:
        """(zone id without prefix, zone name with trailing dot) for every hosted zone."""
        zones: list[tuple[str, str]] = []
        try:
            for page in self._client.get_paginator("list_hosted_zones").paginate():
                for zone in page.get("HostedZones", []):
                    zones.append((strip_zone_prefix(zone["Id"]), str(zone["Name"]).lower()))
        except ClientError as exc:
            raise AwsError.from_client_error(exc, "ListHostedZones") from exc
        return zones

    def list_records(self, zone_id: str) -> list[RecordSet]:
        """Every record set in the zone, following pagination."""
        return list(iter_record_sets(self._client, zone_id))

    def converge(self, zone_id: str, target: Mapping[RecordKey, RecordSet],
                 assumed: Mapping[RecordKey, RecordSet] | None = None) -> int:
        """Make the emulator's records for ``zone_id`` equal ``target``; return rounds used.

        ``assumed``: what the emulator is known to hold, when nothing else writes to it;
        the first round then writes without reading first (the zone is read back after).

        Raises:
            LabError: the emulator still differs after the bounded number of rounds.
        """
        for round_no in range(1, CONVERGE_ROUNDS + 1):
            if round_no == 1 and assumed is not None:
                actual = dict(assumed)
            else:
                actual = index_records(self.list_records(zone_id))
            removed, changed = diff(actual, target)
            if not removed and not changed:
                return round_no - 1
            self._write(zone_id, removed, changed)
        actual = index_records(self.list_records(zone_id))
        removed, changed = diff(actual, target)
        if removed or changed:
            raise LabError(
                f"the emulator at {self.endpoint_url} did not converge on zone {zone_id}: "
                f"{len(removed)} extra and {len(changed)} missing/different records remain; "
                "restart the lab, or use a backend with faithful Route 53 (see README)"
            )
        return CONVERGE_ROUNDS

    def _write(self, zone_id: str, removed: list[RecordSet], changed: list[RecordSet]) -> None:
        # Names go without the trailing dot: moto matches a DELETE against its journal of past
        # changes by the name as it was sent, and the lab sends every change itself.
        for trailing_dot in (False, True):
            changes = [
                {"Action": "DELETE", "ResourceRecordSet": r.to_api(trailing_dot=trailing_dot)}
                for r in removed
            ] + [
                {"Action": "UPSERT", "ResourceRecordSet": r.to_api(trailing_dot=trailing_dot)}
                for r in changed
            ]
            try:
                self._client.change_resource_record_sets(
                    HostedZoneId=zone_id, ChangeBatch={"Changes": changes}
                )
                return
            except ClientError as exc:
                error = AwsError.from_client_error(exc, "ChangeResourceRecordSets")
                if trailing_dot or error.code not in ("InvalidInput", "InvalidChangeBatch"):
                    raise error from exc
        # Unreachable: the loop either returns or raises.
        raise LabError("emulator write failed")  # pragma: no cover
