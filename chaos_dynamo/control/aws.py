"""The control plane's world over real AWS APIs (the lab's, through boto3).

:class:`Route53Zones` and :class:`DynamoPlans` implement the interfaces of
:mod:`chaos_dynamo.control.world` with a boto3 Route 53 client (pointed at the lab's front,
where AWS's change rules apply) and the DynamoDB plan table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from chaos_dynamo.errors import AwsError
from chaos_dynamo.planstore import PlanStore
from chaos_dynamo.route53.records import RecordSet, normalize_name
from chaos_dynamo.route53.rules import Change


class Route53Zones:
    """Hosted zones through a boto3 Route 53 client."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.last_change_id = ""
        """The id of the last batch this store had accepted (to wait for it to be INSYNC)."""

    def read(self, zone_id: str, name: str) -> list[RecordSet]:
        from chaos_dynamo.endpoint._lab import records_at

        return records_at(self._client, zone_id, name)

    def change(self, zone_id: str, changes: Sequence[Change], comment: str = "") -> None:
        batch: dict[str, Any] = {"Changes": [{"Action": c.action, "ResourceRecordSet": c.record.to_api()}
                                             for c in changes]}
        if comment:
            batch["Comment"] = comment[:256]
        try:
            response = self._client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch=batch)
        except ClientError as exc:
            raise AwsError.from_client_error(exc, "ChangeResourceRecordSets") from exc
        self.last_change_id = str(response["ChangeInfo"]["Id"])


class DynamoPlans(PlanStore):
    """The plan table, with holds kept as a string set on each plan's item."""

    def newest_generation(self) -> int | None:
        generations = self.generations()
        return generations[-1] if generations else None

    def delete(self, generation: int, *, unless_held: bool = False) -> bool:  # type: ignore[override]
        kwargs: dict[str, Any] = {"TableName": self.table, "Key": _key(generation)}
        if unless_held:
            kwargs["ConditionExpression"] = "attribute_not_exists(holders)"
        try:
            self._ddb.delete_item(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise AwsError.from_client_error(exc, "DeleteItem") from exc
        return True

    def hold(self, generation: int, holder: str) -> None:
        self._update(generation, "ADD holders :h", holder, "attribute_exists(generation)")

    def release(self, generation: int, holder: str) -> None:
        self._update(generation, "DELETE holders :h", holder, "attribute_exists(generation)")

    def holders(self, generation: int) -> frozenset[str]:
        try:
            item = self._ddb.get_item(TableName=self.table, Key=_key(generation), ConsistentRead=True,
                                      ProjectionExpression="holders").get("Item", {})
        except ClientError as exc:
            raise AwsError.from_client_error(exc, "GetItem") from exc
        return frozenset(item.get("holders", {}).get("SS", []))

    def _update(self, generation: int, expression: str, holder: str, condition: str) -> None:
        try:
            self._ddb.update_item(TableName=self.table, Key=_key(generation), UpdateExpression=expression,
                                  ExpressionAttributeValues={":h": {"SS": [holder]}},
                                  ConditionExpression=condition)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return  # the plan is gone: nothing to hold or release
            raise AwsError.from_client_error(exc, "UpdateItem") from exc


def _key(generation: int) -> dict[str, Any]:
    return {"generation": {"N": str(generation)}}


__all__ = ["Route53Zones", "DynamoPlans", "normalize_name"]
