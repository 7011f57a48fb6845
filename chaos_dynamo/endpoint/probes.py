"""Chaos Toolkit probes of the DynamoDB endpoint, as a service sees it.

They ask the lab DNS over real UDP and call DynamoDB through the endpoint's DNS name and the
LB fleet with a real boto3 client, so a probe fails for the same reasons a service would.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chaos_dynamo.dns.client import DnsTimeout, query
from chaos_dynamo.endpoint import _lab
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.planstore import PlanStore
from chaos_dynamo.route53.backend import make_client
from chaos_dynamo.shim import lab_resolver

__all__ = ["endpoint_addresses", "endpoint_answer", "dynamodb_roundtrip"]

SMOKE_TABLE = "chaos-dynamo-smoke"


def _check_qtype(qtype: str) -> str:
    if qtype not in ("A", "AAAA"):
        raise ConfigError("qtype", f"{qtype!r} is not an address type", "use \"A\" or \"AAAA\"")
    return qtype


def endpoint_answer(endpoint: str = "", qtype: str = "A", *,
                    configuration: dict[str, Any] | None = None,
                    secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the lab DNS answers for the endpoint: ``{"name", "rcode", "addresses", "count"}``.

    An emptied endpoint answers ``NOERROR`` with ``count`` 0, as in us-east-1.

    Raises:
        LabError: the lab DNS did not answer, so nothing can be said about the endpoint
            (a dead lab must not look like an emptied endpoint).
    """
    qtype = _check_qtype(qtype)
    info = _lab.lab_info(configuration)
    ep = info.endpoint(endpoint)
    try:
        answer = query(info.dns, ep.name, qtype, timeout=2.0, retries=2)
    except DnsTimeout as exc:
        raise LabError(
            f"the lab DNS at {info.dns_host}:{info.dns_port} did not answer for {ep.name} ({exc}); "
            "is the lab still running? check with `chaos-dynamo lab status`"
        ) from None
    return {"name": ep.name, "rcode": answer.rcode, "addresses": list(answer.addresses),
            "count": len(answer.addresses)}


def endpoint_addresses(endpoint: str = "", qtype: str = "A", *,
                       configuration: dict[str, Any] | None = None,
                       secrets: dict[str, Any] | None = None) -> int:
    """How many addresses the lab DNS returns for the endpoint (0 when it is empty).

    A sensible tolerance: ``{"type": "range", "range": [1, 1000]}``.
    """
    return int(endpoint_answer(endpoint, qtype, configuration=configuration)["count"])


def dynamodb_roundtrip(endpoint: str = "", table: str = SMOKE_TABLE, timeout: float = 2.0, *,
                       configuration: dict[str, Any] | None = None,
                       secrets: dict[str, Any] | None = None) -> bool:
    """PutItem then GetItem through the endpoint's DNS name; True when the item comes back.

    One attempt, no SDK retries, so the answer reflects the endpoint now. A name that does
    not resolve shows up as botocore's ``EndpointConnectionError`` and a False result.
    In a namespace the default table carries the namespace's table prefix.
    Tolerance: ``true``.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
        raise ConfigError("timeout", f"{timeout!r} is not a duration in seconds", "use 0.1 to 60")
    info = _lab.lab_info(configuration)
    url = info.dynamodb_url(endpoint)
    if table == SMOKE_TABLE:  # a namespace's own, so round trips of two namespaces never meet
        table = f"{info.table_prefix}{table}"
    # The table is made through the lab's API endpoint, not the name under test.
    PlanStore(make_client("dynamodb", info.api_url, info.region), table).ensure_table()
    # Not make_client(): that one has a 30 s read timeout and takes no Config override.
    client = boto3.client(
        "dynamodb", endpoint_url=url, region_name=info.region,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"},
                      connect_timeout=timeout, read_timeout=timeout),
    )
    marker = uuid.uuid4().hex
    key = {"generation": {"N": "0"}}
    try:
        with lab_resolver(info.dns, zones=list(info.zones)):
            client.put_item(TableName=table, Item={**key, "marker": {"S": marker}})
            item = client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item", {})
    except (BotoCoreError, ClientError) as exc:
        _lab.logger.info("DynamoDB round trip through %s failed: %s: %s", url, type(exc).__name__, exc)
        return False
    return bool(item.get("marker", {}).get("S") == marker)
