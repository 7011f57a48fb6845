"""The one guard every destructive activity that can reach AWS passes before its first call.

:func:`require_allowed` decides from where the activity's calls would go
(:mod:`chaos_dynamo.safety.target`) and the experiment's allow-list:

- the lab, or a loopback endpoint, with no allow-list: allowed.
- anywhere else (real AWS, or any non-loopback endpoint) with no allow-list: refused with a
  SafetyError, before anything is sent, saying what was refused and the exact JSON to add.
- with an allow-list, wherever the target is (loopback too: that is how the checks are
  tested against a local moto_server): the region the activity's clients use, the hosted
  zone(s) it would change and the DynamoDB table(s) it would write must be the ones named;
  then STS must be asked where its answer speaks for the activity's calls
  (:func:`_check_sts_endpoint`: on real AWS, AWS's own STS endpoint and every client on an
  AWS endpoint of the allowed region; on the lab or loopback, STS on the same host and port
  as the clients); then STS GetCallerIdentity, asked with the activity's credentials, must
  answer the account named. Any mismatch is a SafetyError saying which, and what STS or the
  activity said. Every check but the last is local: a refusal by one of them sends nothing.

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
from chaos_dynamo.safety.target import (
    GLOBAL_SERVICES,
    LAB,
    REMOTE,
    Kind,
    aws_endpoint,
    check_region,
    check_table,
    check_zone_id,
    config_section,
    describe,
    endpoint_url,
    host_port,
)

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
    data = config_section(configuration, ALLOW_KEY, _ALLOW_KEYS,
                          '{"aws_account_id": "123456789012", "region": "us-east-1", "hosted_zone_id": "Z..."}')
    if data is None:
        return None
    where = f"configuration.{ALLOW_KEY}"
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
                    configuration: Mapping[str, Any] | None, sts: Callable[[], Any], clients: Sequence[Any],
                    hosted_zones: Sequence[str] = (), tables: Sequence[str] = ()) -> Clearance:
    """Allow the activity, or raise before it sends anything (see the module docstring).

    Args:
        activity: the activity's name, for messages.
        kind: where its calls would go (:mod:`chaos_dynamo.safety.target`).
        where: the endpoint(s), for messages.
        region: the region its clients are made for.
        sts: makes the STS client that answers for the account its calls would land in
            (making it sends nothing; its resolved endpoint is checked before it is asked).
        clients: the boto3 clients the activity writes with, whose resolved endpoints STS
            must speak for.
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
    sts_client = _sts_client(activity, sts)
    _check_sts_endpoint(activity, kind, allow.region, sts_client, clients)
    account, arn = _caller_identity(activity, sts_client)
    if account != allow.aws_account_id:
        raise SafetyError(f"{activity} refused: STS GetCallerIdentity says its calls would act in account "
                          f"{account} (as {arn}), but {field}.aws_account_id allows only "
                          f"{allow.aws_account_id}. Nothing was changed; use credentials of the allowed "
                          "account, or change the allow-list if that account is meant")
    clearance = Clearance(kind, where, "allow-list", account, arn)
    logger.info("%s allowed by %s: account %s (STS: %s), region %s, %s %s", activity, field, account, arn,
                region, "on" if kind != LAB else "on the lab,", where)
    return clearance


def _sts_client(activity: str, sts: Callable[[], Any]) -> Any:
    from botocore.exceptions import BotoCoreError

    try:
        return sts()  # a client only: nothing is sent
    except (BotoCoreError, ValueError) as exc:
        raise SafetyError(f"{activity} refused: could not make the STS client that confirms the account "
                          f"({type(exc).__name__}: {exc}). Nothing was sent") from None


def _check_sts_endpoint(activity: str, kind: Kind, region: str, sts: Any, clients: Sequence[Any]) -> None:
    """Refuse unless STS's answer speaks for the endpoints the activity writes to.

    Real AWS (``remote``): STS must be AWS's own (``https://sts[.REGION].amazonaws.com[.cn]``)
    and every client on an AWS endpoint of its service, in the allowed region (or global,
    for Route 53) and STS's partition; anything else (an emulator, a proxy, a corporate
    host) is an account STS knows nothing about. The lab or loopback: STS on the same host
    and port as every client (moto and LocalStack answer STS on their one port).
    """
    if not clients:  # nothing to compare STS with: never a pass by default
        raise SafetyError(f"{activity} refused: the guard was given no client whose endpoint STS must speak for. "
                          "Nothing was sent")
    sts_url = endpoint_url(sts)
    if kind == REMOTE:
        found = aws_endpoint(sts_url)
        if found is None or found.service != "sts":
            raise SafetyError(
                f"{activity} refused: its calls would go to real AWS or another remote endpoint, but STS "
                f"GetCallerIdentity would be asked at {describe(sts)}, which is not AWS's own STS endpoint "
                "(https://sts[.REGION].amazonaws.com[.cn]), so its answer would not say which account the "
                "calls act in. Nothing was sent; unset AWS_ENDPOINT_URL_STS (and any sts endpoint_url of the "
                "profile) for a real-AWS run")
        for client in clients:
            service = str(client.meta.service_model.endpoint_prefix)
            ep = aws_endpoint(endpoint_url(client))
            in_region = ep is not None and (ep.region == region if ep.region else service in GLOBAL_SERVICES)
            if ep is None or not in_region or ep.service != service or ep.partition != found.partition:
                expected = (f"https://{service}.amazonaws.com" if service in GLOBAL_SERVICES
                            else f"https://{service}.{region}.amazonaws.com")
                raise SafetyError(
                    f"{activity} refused: it would send to {describe(client)}, which is not an AWS {service} "
                    f"endpoint of region {region} (e.g. {expected}), so STS GetCallerIdentity cannot confirm "
                    "the account those calls act in. Nothing was sent; point it at AWS itself, or, for a local "
                    "emulator, at its loopback address (127.0.0.1, ::1, localhost)")
        return
    where = host_port(sts_url)
    for client in clients:
        if host_port(endpoint_url(client)) != where or where is None:
            raise SafetyError(
                f"{activity} refused: it would send to {describe(client)}, but STS GetCallerIdentity would "
                f"be asked at {describe(sts)}, another endpoint, whose answer would not say which account the "
                "calls act in. Nothing was sent; ask STS on the same host and port (unset "
                f"AWS_ENDPOINT_URL_STS, or set it to {endpoint_url(client)})")


def _caller_identity(activity: str, client: Any) -> tuple[str, str]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
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
