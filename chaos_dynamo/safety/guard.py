"""The one guard every destructive activity that can reach AWS passes before its first call.

:func:`require_allowed` decides from where the activity's calls would go
(:mod:`chaos_dynamo.safety.target`) and the experiment's allow-list:

- the lab, or a loopback endpoint, with no allow-list: allowed.
- anywhere else (real AWS, or any non-loopback endpoint) with no allow-list: refused with a
  SafetyError, before anything is sent, saying what was refused and the exact JSON to add.
- with an allow-list, wherever the target is (loopback too: that is how the checks are
  tested against a local moto_server): the region the activity's clients use, the hosted
  zone(s) it would change and the DynamoDB table(s) it would write must be the ones named,
  and STS GetCallerIdentity, asked with the credentials and endpoint the activity's calls
  use, must answer the account named. Any mismatch is a SafetyError saying which, and what
  STS or the activity said. The local checks come first: a wrong region or zone sends
  nothing at all.

The allow-list, in the experiment's configuration::

    "chaos_dynamo_allow": {
        "aws_account_id": "123456789012",
        "region": "us-east-1",
        "hosted_zone_id": "Z0123456789ABCDEFGHIJ",
        "dynamodb_tables": ["leases"]
    }

``hosted_zone_id`` is required by the activities that change Route 53 records,
``dynamodb_tables`` by those that write DynamoDB items (``expire_leases``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chaos_dynamo.errors import ConfigError, SafetyError
from chaos_dynamo.safety.target import LAB, REMOTE, Kind, check_region, check_table, check_zone_id

logger = logging.getLogger("chaostoolkit")

ALLOW_KEY = "chaos_dynamo_allow"
_ALLOW_KEYS = ("aws_account_id", "region", "hosted_zone_id", "dynamodb_tables")
_ACCOUNT = re.compile(r"^\d{12}$")
ACCOUNT_PLACEHOLDER = "<your 12-digit AWS account id>"


@dataclass(frozen=True)
class AllowList:
    """The configuration's ``chaos_dynamo_allow``, validated."""

    aws_account_id: str
    region: str
    hosted_zone_id: str | None
    dynamodb_tables: tuple[str, ...]


def allow_list(configuration: Mapping[str, Any] | None) -> AllowList | None:
    """The experiment's allow-list, or None when it declares none.

    Raises:
        ConfigError: a key is unknown, missing or malformed (named as
            ``configuration.chaos_dynamo_allow.<key>``).
    """
    if not configuration or configuration.get(ALLOW_KEY) is None:
        return None
    where = f"configuration.{ALLOW_KEY}"
    data = configuration[ALLOW_KEY]
    if not isinstance(data, Mapping):
        raise ConfigError(where, f"{data!r} is not an object",
                          'write it as {"aws_account_id": "123456789012", "region": "us-east-1", '
                          '"hosted_zone_id": "Z..."}')
    for key in data:
        if key not in _ALLOW_KEYS:
            raise ConfigError(f"{where}.{key}", "is not a known key", f"use only {list(_ALLOW_KEYS)}")
    for key in ("aws_account_id", "region"):
        if key not in data:
            raise ConfigError(f"{where}.{key}", "is missing", "an allow-list names the account and the region")
    account = data["aws_account_id"]
    if not isinstance(account, str) or not _ACCOUNT.match(account):
        raise ConfigError(f"{where}.aws_account_id", f"{account!r} is not a 12-digit AWS account id",
                          "give it in quotes, e.g. \"123456789012\" (`aws sts get-caller-identity` shows yours)")
    region = check_region(f"{where}.region", data["region"])
    zone = data.get("hosted_zone_id")
    zone_id = None if zone is None else check_zone_id(f"{where}.hosted_zone_id", zone)
    tables = data.get("dynamodb_tables", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{where}.dynamodb_tables", f"{tables!r} is not a list of table names",
                          'list them, e.g. ["leases"]')
    names = tuple(check_table(f"{where}.dynamodb_tables[{i}]", t) for i, t in enumerate(tables))
    return AllowList(account, region, zone_id, names)


@dataclass(frozen=True)
class Clearance:
    """Why an activity may act: on the lab, on loopback, or by the allow-list (with the
    account STS confirmed)."""

    target: Kind
    where: str
    allowed_by: str
    account: str | None = None
    arn: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "where": self.where, "allowed_by": self.allowed_by,
                "account": self.account, "arn": self.arn}


def require_allowed(activity: str, *, kind: Kind, where: str, region: str,
                    configuration: Mapping[str, Any] | None, sts: Callable[[], Any],
                    hosted_zones: Sequence[str] = (), tables: Sequence[str] = ()) -> Clearance:
    """Allow the activity, or raise before it sends anything (see the module docstring).

    Args:
        activity: the activity's name, for messages.
        kind: where its calls would go (:mod:`chaos_dynamo.safety.target`).
        where: the endpoint(s), for messages.
        region: the region its clients are made for.
        sts: makes the STS client that answers for the account its calls would land in.
        hosted_zones: the hosted zones it would change.
        tables: the DynamoDB tables it would write.

    Raises:
        ConfigError: a malformed allow-list.
        SafetyError: refused.
    """
    allow = allow_list(configuration)
    if allow is None:
        if kind != REMOTE:
            return Clearance(kind, where, kind)
        raise SafetyError(_refusal(activity, where, region, hosted_zones, tables))
    field = f"configuration.{ALLOW_KEY}"
    if region != allow.region:
        raise SafetyError(f"{activity} refused: its calls would use region {region!r} ({where}), but "
                          f"{field}.region allows only {allow.region!r}. Nothing was sent; set the region "
                          f"the experiment targets, or change the allow-list if {region!r} is meant")
    for zone in hosted_zones:
        if allow.hosted_zone_id is None:
            raise SafetyError(f"{activity} refused: it would change hosted zone {zone!r}, and {field} names no "
                              f"hosted zone. Nothing was sent; add \"hosted_zone_id\": \"{zone}\" to {field} "
                              "if that zone is meant")
        if zone != allow.hosted_zone_id:
            raise SafetyError(f"{activity} refused: it would change hosted zone {zone!r}, but "
                              f"{field}.hosted_zone_id allows only {allow.hosted_zone_id!r}. Nothing was sent")
    for table in tables:
        if table not in allow.dynamodb_tables:
            raise SafetyError(f"{activity} refused: it would write table {table!r}, which is not in "
                              f"{field}.dynamodb_tables ({list(allow.dynamodb_tables)}). Nothing was sent; add "
                              f"\"{table}\" to that list if that table is meant")
    account, arn = _caller_identity(activity, sts)
    if account != allow.aws_account_id:
        raise SafetyError(f"{activity} refused: STS GetCallerIdentity says its calls would act in account "
                          f"{account} (as {arn}), but {field}.aws_account_id allows only "
                          f"{allow.aws_account_id}. Nothing was changed; use credentials of the allowed "
                          "account, or change the allow-list if that account is meant")
    clearance = Clearance(kind, where, "allow-list", account, arn)
    logger.info("%s allowed by %s: account %s (STS: %s), region %s, %s %s", activity, field, account, arn,
                region, "on" if kind != LAB else "on the lab,", where)
    return clearance


def _caller_identity(activity: str, sts: Callable[[], Any]) -> tuple[str, str]:
    from botocore.exceptions import BotoCoreError, ClientError

    client = None
    try:
        client = sts()
        answer = client.get_caller_identity()
    except (BotoCoreError, ClientError, ValueError) as exc:
        at = getattr(getattr(client, "meta", None), "endpoint_url", "STS")
        raise SafetyError(f"{activity} refused: could not confirm the account with STS GetCallerIdentity at "
                          f"{at} ({type(exc).__name__}: {exc}). Nothing was changed; check the credentials "
                          "(and AWS_ENDPOINT_URL_STS, if set)") from None
    return str(answer.get("Account", "")), str(answer.get("Arn", ""))


def _refusal(activity: str, where: str, region: str, hosted_zones: Sequence[str], tables: Sequence[str]) -> str:
    allow: dict[str, Any] = {"aws_account_id": ACCOUNT_PLACEHOLDER, "region": region}
    changes = []
    if hosted_zones:
        allow["hosted_zone_id"] = hosted_zones[0]
        changes.append(f"records of hosted zone {', '.join(hosted_zones)}")
    if tables:
        allow["dynamodb_tables"] = list(tables)
        changes.append(f"items of DynamoDB table {', '.join(tables)}")
    opt_in = json.dumps({ALLOW_KEY: allow})[1:-1]
    return (f"{activity} refused: it would change {' and '.join(changes) or 'AWS resources'} at {where}, which "
            f"is not the lab or a loopback endpoint. Nothing was sent. To allow it, add to the experiment's "
            f"\"configuration\": {opt_in} (with your account id); chaos-dynamo then confirms the account with "
            "STS GetCallerIdentity and checks the region and the hosted zone before anything changes. "
            "Once allowed, preview the changes with CHAOS_DYNAMO_DRY_RUN=1 before the real run (docs/safety.md)")
