"""DynamoDB in us-east-1 with botocore's default settings: no timeouts, no second region."""

import os

import boto3
from botocore.config import Config

TABLE = f"audit-east-{os.getpid()}"


def archive_client():
    """Never called during the run: only the static scan sees it."""
    return boto3.client("dynamodb", region_name="us-east-1", config=Config(retries={"mode": "legacy"}))


def main() -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    for i in range(3):
        client.put_item(TableName=TABLE, Item={"pk": {"S": f"k{i}"}})
        client.get_item(TableName=TABLE, Key={"pk": {"S": f"k{i}"}})


if __name__ == "__main__":
    main()
