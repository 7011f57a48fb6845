"""Test helpers for the failover demo topology on the session lab: read a name's records and
remove everything a reference failover controller built (records, then health checks), so
the shared lab's load balancers stop being health-checked once a test is done."""

from __future__ import annotations

from typing import Any

from chaos_dynamo.lab.state import LabInfo
from chaos_dynamo.route53.backend import make_client


def route53(info: LabInfo) -> Any:
    return make_client("route53", info.api_url, info.region)


def records(client: Any, zone_id: str, name: str) -> list[dict[str, Any]]:
    wanted = name.rstrip(".") + "."
    page = client.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=wanted, MaxItems="300")
    return [r for r in page["ResourceRecordSets"] if r["Name"] == wanted]


def clean_up(info: LabInfo, zone: str, name: str) -> None:
    """Delete the demo's records (the failover pair first) and its health checks."""
    client = route53(info)
    zone_id = info.zones[zone]
    names = [name, f"pool.{name}", f"standby.{name}"]
    changes = [{"Action": "DELETE", "ResourceRecordSet": r} for n in names for r in records(client, zone_id, n)]
    if changes:
        client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    prefix = f"chaos-dynamo-failover-{name}-"
    for check in client.list_health_checks()["HealthChecks"]:
        if check["CallerReference"].startswith(prefix):
            client.delete_health_check(HealthCheckId=check["Id"])
