"""Checks the table with DescribeTable before every write: the control plane on the data path."""

import os

import boto3
from botocore.config import Config

TABLE = f"audit-describe-{os.getpid()}"


def main() -> None:
    client = boto3.client("dynamodb", config=Config(connect_timeout=2, read_timeout=5,
                                                    retries={"mode": "standard"}))
    client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    for i in range(5):
        if client.describe_table(TableName=TABLE)["Table"]["TableStatus"] == "ACTIVE":
            client.put_item(TableName=TABLE, Item={"pk": {"S": f"k{i}"}})


if __name__ == "__main__":
    main()
