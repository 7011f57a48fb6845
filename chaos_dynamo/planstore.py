"""The DNS Planner's plan store: numbered plans in a DynamoDB table.

Plans are written once (a conditional put refuses to overwrite a generation) and read by
the Enactors and by the operator's restore. Key: ``generation`` (number).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chaos_dynamo.errors import AwsError
from chaos_dynamo.plans import Plan


class PlanStore:
    """Plans in a DynamoDB table, reached through any boto3 DynamoDB client."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._ddb = dynamodb
        self.table = table

    def ensure_table(self) -> bool:
        """Create the table if it is missing; return True when it was created."""
        try:
            self._ddb.describe_table(TableName=self.table)
            return False
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise AwsError.from_client_error(exc, "DescribeTable") from exc
        try:
            self._ddb.create_table(
                TableName=self.table,
                KeySchema=[{"AttributeName": "generation", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "generation", "AttributeType": "N"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise AwsError.from_client_error(exc, "CreateTable") from exc
            return False
        return True

    def put(self, plan: Plan) -> None:
        """Store a new generation; an existing generation is never overwritten."""
        try:
            self._ddb.put_item(
                TableName=self.table,
                Item={"generation": {"N": str(plan.generation)}, "plan": {"S": plan.to_json()}},
                ConditionExpression="attribute_not_exists(generation)",
            )
        except ClientError as exc:
            raise AwsError.from_client_error(exc, "PutItem") from exc

    def get(self, generation: int) -> Plan | None:
        try:
            item = self._ddb.get_item(
                TableName=self.table, Key={"generation": {"N": str(generation)}}, ConsistentRead=True,
            ).get("Item")
        except ClientError as exc:
            raise AwsError.from_client_error(exc, "GetItem") from exc
        return Plan.from_json(item["plan"]["S"]) if item else None

    def generations(self) -> list[int]:
        """Every stored generation, ascending."""
        found: list[int] = []
        # Consistent: an Enactor must see a plan the Planner has just written.
        kwargs: dict[str, Any] = {"TableName": self.table, "ProjectionExpression": "generation",
                                  "ConsistentRead": True}
        try:
            while True:
                page = self._ddb.scan(**kwargs)
                found.extend(int(i["generation"]["N"]) for i in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return sorted(found)
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except ClientError as exc:
            raise AwsError.from_client_error(exc, "Scan") from exc

    def newest(self) -> Plan | None:
        generations = self.generations()
        return self.get(generations[-1]) if generations else None

    def delete(self, generation: int) -> None:
        try:
            self._ddb.delete_item(TableName=self.table, Key={"generation": {"N": str(generation)}})
        except ClientError as exc:
            raise AwsError.from_client_error(exc, "DeleteItem") from exc
