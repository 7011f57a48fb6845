"""Chaos Toolkit action on the lease table: a burst of re-queued work.

``expire_leases`` does to a lease table what an outage longer than the lease expiry does:
it makes ``count`` live leases expired at once, so the lease manager has that many to
re-establish together. Each chosen lease (chosen with ``random.Random(seed)`` among the
live ones, sorted by key, so the same table state and seed choose the same leases) gets an
expiry one second in the past, in the schema's unit, and its version bumped by one, both
written only if the version is still the one read: a lease renewed in between is left
alone and counted as skipped. Its holder's next renewal then fails its version check, as a
fencing token should.

It writes to the table, so it passes the safety guard first
(:func:`chaos_dynamo.safety.guard.require_allowed`): the lab's DynamoDB emulator
(``endpoint=""``, written directly, not through the LB fleet: this is a fault of the data,
not traffic) and a local DynamoDB on 127.x.x.x / ``::1`` / localhost are allowed; any other
endpoint is refused with a SafetyError unless the experiment's allow-list
(``chaos_dynamo_allow``) names the account (confirmed by STS), the region and the table. In
a dry run the UpdateItem calls are printed, not sent (:mod:`chaos_dynamo.safety.dryrun`).
See docs/safety.md.
"""

import logging
import random
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.control._client import JsonDict
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lease.schema import LeaseSchema
from chaos_dynamo.lease.table import make_client, resolve_endpoint, scan_items, translate
from chaos_dynamo.safety import dryrun
from chaos_dynamo.safety.guard import require_allowed
from chaos_dynamo.safety.target import LAB, describe, kind_of, sts_for_endpoint

__all__ = ["expire_leases"]

logger = logging.getLogger("chaostoolkit")

PAST = 1.0
"""Seconds before now the chosen leases' expiry is set to."""
MAX_COUNT = 1_000_000


def _count(value: object) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            pass
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ConfigError("count", f"{value!r} is not a number of leases", f"give a whole number from 0 to {MAX_COUNT}")
    return value


def _seed(value: object) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError("seed", f"{value!r} is not a whole number", "give a seed such as 0 or 42")
    return value


def expire_leases(count: int, table: str, key: str = "lease_id", owner: str = "owner",
                  expiry: str = "expires_at", expiry_unit: str = "s", version: str = "version",
                  seed: int = 0, endpoint: str = "", *, configuration: dict[str, Any] | None = None,
                  secrets: dict[str, Any] | None = None) -> JsonDict:
    """Expire ``count`` live leases at once (seeded choice), bumping each one's version.

    Returns ``{"table", "requested", "live", "expired", "skipped", "keys", "seed", "at",
    "endpoint"}``: ``expired`` leases were written, ``skipped`` changed between the read and
    the write (left alone). Fewer live leases than ``count``: all of them.

    Raises:
        SafetyError: ``endpoint`` is not the lab or a loopback URL and the experiment's
            allow-list does not name its account, region and table (docs/safety.md).
        ConfigError: a bad count, seed or schema, or allow-list; the table does not exist.
    """
    return _expire(count, table, key, owner, expiry, expiry_unit, version, seed, endpoint, configuration)


def _expire(count: object, table: object, key: object, owner: object, expiry: object, expiry_unit: object,
            version: object, seed: object, endpoint: object, configuration: dict[str, Any] | None,
            clock: Clock = REAL_CLOCK) -> JsonDict:
    wanted = _count(count)
    rng = random.Random(_seed(seed))
    schema = LeaseSchema.from_arguments(table, key, owner, expiry, expiry_unit, version)
    target = resolve_endpoint(endpoint, configuration)
    client = dryrun.guard(make_client(target), configuration)  # makes no request
    kind = LAB if target.from_lab else kind_of([client])
    clearance = require_allowed(
        "expire_leases", kind=kind, where=f"endpoint {describe(client)}", region=str(client.meta.region_name),
        configuration=configuration, sts=sts_for_endpoint(target.url, target.region, kind != "remote"),
        clients=[client], tables=[schema.table])
    dry = dryrun.active(configuration)
    key_names = _key_attributes(client, schema)
    items = scan_items(client, schema, extra=key_names)
    now = clock.now()
    live: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        lease = schema.decode(item)
        if lease.expires_at > now:
            live.append((lease.key, item))
    live.sort(key=lambda pair: pair[0])
    chosen = rng.sample(live, min(wanted, len(live)))
    expired: list[str] = []
    skipped: list[str] = []
    past = now - PAST
    for lease_key, item in chosen:
        if _write(client, schema, key_names, item, past):
            expired.append(lease_key)
        else:
            skipped.append(lease_key)
    result: JsonDict = {"table": schema.table, "requested": wanted, "live": len(live), "expired": len(expired),
                        "skipped": len(skipped), "keys": sorted(expired), "skipped_keys": sorted(skipped),
                        "seed": seed, "at": now, "expires_at": past, "endpoint": target.url,
                        "safety": clearance.as_dict(), "dry_run": dry}
    logger.info("expire_leases on %s: %d of %d live leases expired (seed %s, %d requested, %d skipped: "
                "renewed in between)", schema.table, len(expired), len(live), seed, wanted, len(skipped))
    return result


def _key_attributes(client: Any, schema: LeaseSchema) -> list[str]:
    """The table's key attributes (hash, and range if any): what UpdateItem's Key needs."""
    try:
        description = client.describe_table(TableName=schema.table)
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, schema, client, "DescribeTable") from exc
    names = [str(k["AttributeName"]) for k in description["Table"]["KeySchema"]]
    if schema.key not in names:
        raise ConfigError("key", f"{schema.key!r} is not a key attribute of table {schema.table} (its key is "
                          f"{names})", f"set key (lease_key) to {names[0]!r}")
    return names


def _write(client: Any, schema: LeaseSchema, key_names: list[str], item: dict[str, Any], past: float) -> bool:
    """Expire one lease if it is unchanged since it was read; False when it changed."""
    names = {"#e": schema.expiry}
    values: dict[str, Any] = {":past": schema.encode_expiry(past, item[schema.expiry])}
    if schema.version:
        kind, raw = next(iter(item[schema.version].items()))
        names["#v"] = schema.version
        values[":read"] = {kind: raw}
        bumped = str(int(Decimal(str(raw))) + 1)
        values[":next"] = {kind: bumped}
        update, condition = "SET #e = :past, #v = :next", "#v = :read"
    else:
        values[":read"] = item[schema.expiry]
        update, condition = "SET #e = :past", "#e = :read"
    try:
        client.update_item(TableName=schema.table, Key={k: item[k] for k in key_names},
                           UpdateExpression=update, ConditionExpression=condition,
                           ExpressionAttributeNames=names, ExpressionAttributeValues=values)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise translate(exc, schema, client, "UpdateItem") from exc
    except BotoCoreError as exc:
        raise translate(exc, schema, client, "UpdateItem") from exc
    return True
