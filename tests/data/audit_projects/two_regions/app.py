"""DynamoDB in two regions, bounded timeouts and standard retries: nothing to flag.

On the lab both clients reach the one lab endpoint (AWS_ENDPOINT_URL_DYNAMODB), which keeps
one region's tables: each region's table gets its own name.
"""

import os

import boto3
from botocore.config import Config

CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3})
REGIONS = ("us-east-1", "us-west-2")


def main() -> None:
    tables = {region: f"audit-two-{region}-{os.getpid()}" for region in REGIONS}
    clients = {region: boto3.client("dynamodb", region_name=region, config=CONFIG) for region in REGIONS}
    for region, client in clients.items():
        client.create_table(TableName=tables[region], BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    for i in range(3):
        for region, client in clients.items():
            client.put_item(TableName=tables[region], Item={"pk": {"S": f"k{i}"}})


if __name__ == "__main__":
    main()
