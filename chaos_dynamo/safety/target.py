"""Where a destructive activity's calls would go: the lab, a loopback endpoint, or remote.

One classification, used by every guard (:mod:`chaos_dynamo.safety.guard`):

- ``lab``: the running lab, found as every activity finds it (configuration
  ``chaos_dynamo_api`` / ``chaos_dynamo_state``, ``$CHAOS_DYNAMO_API``, the state file), whose
  addresses :func:`chaos_dynamo.endpoint._lab.lab_info` has checked to be loopback.
- ``loopback``: an endpoint URL whose host is 127.x.x.x, ``::1`` or ``localhost``, from
  ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_ROUTE_53`` / ``_DYNAMODB`` / ``_STS`` (or the
  shared config file) or from an activity's ``endpoint`` URL argument.
- ``remote``: anything else, including no endpoint URL at all, which is real AWS.

The classification reads the endpoint each boto3 client has *resolved*
(``client.meta.endpoint_url``), so it is exactly where the client's requests would go, and
making a client sends nothing.

The endpoint actions act on the lab unless the experiment's configuration names a real
AWS target (:data:`AWS_TARGET_KEY`), which they then reach with the user's own boto3
credentials and endpoint settings (never the lab's dummy ones)::

    "chaos_dynamo_aws_target": {
        "hosted_zone_id": "Z0123456789ABCDEFGHIJ",
        "endpoints": ["dynamodb.sandbox.example.com"],
        "plan_table": "chaos-dynamo-plans",
        "region": "us-east-1",
        "record_ttl": 5
    }

``endpoints`` may also hold ``{"name": ..., "ipv6": true}`` for a dual-stack name;
``region`` defaults to boto3's (``AWS_REGION``, the profile), ``plan_table`` to
``chaos-dynamo-plans`` and ``record_ttl`` to 5.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlparse

from chaos_dynamo.config import check_dns_name, is_loopback_host
from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lab.state import EndpointInfo, LabInfo
from chaos_dynamo.safety import dryrun

Kind = Literal["lab", "loopback", "remote"]
LAB: Kind = "lab"
LOOPBACK: Kind = "loopback"
REMOTE: Kind = "remote"

AWS_TARGET_KEY = "chaos_dynamo_aws_target"
DEFAULT_PLAN_TABLE = "chaos-dynamo-plans"
DEFAULT_RECORD_TTL = 5
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
ZONE_ID = re.compile(r"^[A-Z0-9]{1,32}$")
TABLE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_TARGET_KEYS = {"hosted_zone_id", "endpoints", "plan_table", "region", "record_ttl"}
_ENV_NAMES = {"route53": "ROUTE_53", "dynamodb": "DYNAMODB", "sts": "STS"}
Configuration = Mapping[str, Any] | None
_loader: Any = None


def is_loopback(host: str | None) -> bool:
    """True for ``localhost``, 127.x.x.x and ``::1``."""
    return bool(host) and (host == "::1" or is_loopback_host(str(host)))


def url_kind(url: str | None) -> Kind:
    """``loopback`` for a URL on a loopback host; ``remote`` for any other, or none (real AWS)."""
    if not url:
        return REMOTE
    try:
        host = urlparse(url).hostname
    except ValueError:
        return REMOTE
    return LOOPBACK if is_loopback(host) else REMOTE


def client_kind(client: Any) -> Kind:
    """Where a boto3 client's requests go: its resolved endpoint URL, classified."""
    return url_kind(getattr(client.meta, "endpoint_url", None))


def kind_of(clients: Sequence[Any]) -> Kind:
    """``remote`` if any of the clients would reach a remote endpoint, else ``loopback``."""
    return REMOTE if any(client_kind(c) == REMOTE for c in clients) else LOOPBACK


_AWS_HOST = re.compile(r"^(?P<service>[a-z0-9]+)(?:-fips)?(?:\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d))?"
                       r"\.(?P<domain>amazonaws\.com(?:\.cn)?|api\.aws)$")
GLOBAL_SERVICES = frozenset({"route53", "sts"})
"""Services AWS serves from one endpoint with no region in its name (route53.amazonaws.com)."""


@dataclass(frozen=True)
class AwsEndpoint:
    """An endpoint URL that is AWS's own: ``https://SERVICE[-fips][.REGION].amazonaws.com[.cn]``
    (or ``.api.aws``, dual-stack), on the default port."""

    service: str
    region: str | None
    partition: str


def aws_endpoint(url: str | None) -> AwsEndpoint | None:
    """``url`` as AWS's own endpoint, or None when it is anything else (http, another port,
    another host: an emulator, a proxy, a look-alike name)."""
    try:
        parsed = urlparse(url or "")
        port = parsed.port
    except ValueError:
        return None
    match = _AWS_HOST.match((parsed.hostname or "").lower())
    if parsed.scheme != "https" or port not in (None, 443) or match is None:
        return None
    partition = "aws-cn" if match["domain"].endswith(".cn") else "aws"
    return AwsEndpoint(match["service"], match["region"], partition)


def host_port(url: str | None) -> tuple[str, int] | None:
    """The ``(host, port)`` a URL connects to (the scheme's port when none is given)."""
    try:
        parsed = urlparse(url or "")
        port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
    except ValueError:
        return None
    return ((parsed.hostname or "").lower(), port) if parsed.hostname and port else None


def endpoint_url(client: Any) -> str:
    """The endpoint a boto3 client has resolved ("" for none)."""
    return str(getattr(client.meta, "endpoint_url", "") or "")


def describe(client: Any) -> str:
    """A client's endpoint and where that came from, for messages."""
    url = str(getattr(client.meta, "endpoint_url", "") or "")
    service = str(client.meta.service_model.endpoint_prefix)
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() != "true":
        for var in (f"AWS_ENDPOINT_URL_{_ENV_NAMES.get(service, service.upper())}", "AWS_ENDPOINT_URL"):
            if os.environ.get(var) and os.environ[var].rstrip("/") == url.rstrip("/"):
                return f"{url} (from ${var})"
    if (urlparse(url).hostname or "").endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws")):
        return f"{url} (real AWS: no endpoint URL is configured for {service})"
    return url


@dataclass(frozen=True)
class AwsTargetSpec:
    """The configuration's ``chaos_dynamo_aws_target``, validated."""

    hosted_zone_id: str
    endpoints: tuple[EndpointInfo, ...]
    plan_table: str
    record_ttl: int
    region: str | None


def check_zone_id(field: str, value: Any) -> str:
    """A hosted zone id, without the ``/hostedzone/`` prefix."""
    text = value.strip().removeprefix("/hostedzone/") if isinstance(value, str) else value
    if not isinstance(text, str) or not ZONE_ID.match(text):
        raise ConfigError(field, f"{value!r} is not a hosted zone id",
                          "give the zone's id as Route 53 shows it, e.g. \"Z0123456789ABCDEFGHIJ\"")
    return text


def check_region(field: str, value: Any) -> str:
    if not isinstance(value, str) or not REGION.match(value):
        raise ConfigError(field, f"{value!r} is not an AWS region name", "use e.g. \"us-east-1\"")
    return value


def check_table(field: str, value: Any) -> str:
    if not isinstance(value, str) or not TABLE.match(value):
        raise ConfigError(field, f"{value!r} is not a DynamoDB table name",
                          "use 3-255 letters, digits, '_', '-' or '.'")
    return value


def config_section(configuration: Configuration, key: str, known: Sequence[str],
                   example: str) -> Mapping[str, Any] | None:
    """The object ``configuration[key]`` (None when absent), its keys checked against ``known``.

    Raises:
        ConfigError: it is not an object (the fix shows ``example``), or has an unknown key
            (named as ``configuration.<key>.<unknown>``).
    """
    if not configuration or configuration.get(key) is None:
        return None
    where = f"configuration.{key}"
    data = configuration[key]
    if not isinstance(data, Mapping):
        raise ConfigError(where, f"{data!r} is not an object", f"write it as {example}")
    for name in data:
        if name not in known:
            raise ConfigError(f"{where}.{name}", "is not a known key", f"use only {list(known)}")
    return data


def aws_target_spec(configuration: Configuration) -> AwsTargetSpec | None:
    """The real-AWS target the configuration names, or None (the endpoint actions use the lab).

    Raises:
        ConfigError: a field of ``chaos_dynamo_aws_target`` is missing or malformed (named as
            ``configuration.chaos_dynamo_aws_target.<key>``).
    """
    data = config_section(configuration, AWS_TARGET_KEY, sorted(_TARGET_KEYS),
                          '{"hosted_zone_id": "Z...", "endpoints": ["dynamodb.example.com"], "region": "us-east-1"}')
    if data is None:
        return None
    where = f"configuration.{AWS_TARGET_KEY}"
    if "hosted_zone_id" not in data:
        raise ConfigError(f"{where}.hosted_zone_id", "is missing", "add the id of the hosted zone to act on")
    zone_id = check_zone_id(f"{where}.hosted_zone_id", data["hosted_zone_id"])
    raw = data.get("endpoints")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}.endpoints", f"{raw!r} is not a list of endpoint names",
                          'list the DNS names to act on, e.g. ["dynamodb.sandbox.example.com"]')
    endpoints = []
    for i, item in enumerate(raw):
        field = f"{where}.endpoints[{i}]"
        name, ipv6 = (item.get("name"), item.get("ipv6", False)) if isinstance(item, Mapping) else (item, False)
        if not isinstance(ipv6, bool):
            raise ConfigError(f"{field}.ipv6", f"{ipv6!r} is not true/false", "use true or false")
        endpoints.append(EndpointInfo(check_dns_name(field, name), "", zone_id, ipv6))
    plan_table = check_table(f"{where}.plan_table", data.get("plan_table", DEFAULT_PLAN_TABLE))
    ttl = data.get("record_ttl", DEFAULT_RECORD_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= 2_147_483_647:
        raise ConfigError(f"{where}.record_ttl", f"{ttl!r} is not a TTL in seconds", "use a whole number, e.g. 60")
    region = data.get("region")
    return AwsTargetSpec(zone_id, tuple(endpoints), plan_table, ttl,
                         None if region is None else check_region(f"{where}.region", region))


@dataclass(frozen=True)
class RecordTarget:
    """What the endpoint actions act on: the endpoints, the plan table, and clients for them.

    ``lab`` is set for the lab; otherwise :meth:`kind_for` classifies the clients an
    activity uses. The clients are already dry-run guarded when dry run is on
    (:func:`chaos_dynamo.safety.dryrun.guard`).
    """

    region: str
    endpoints: tuple[EndpointInfo, ...]
    plan_table: str
    record_ttl: int
    route53: Any
    dynamodb: Any
    sts: Callable[[], Any]
    lab: LabInfo | None

    def endpoint(self, name: str | None) -> EndpointInfo:
        """The named endpoint or the first one (as :meth:`LabInfo.endpoint`).

        Raises:
            ConfigError: ``name`` is not one of the target's endpoints.
        """
        if self.lab is not None:
            return self.lab.endpoint(name)
        if name is None or name == "":
            return self.endpoints[0]
        names = [e.name for e in self.endpoints]
        if isinstance(name, str):
            wanted = name.lower().rstrip(".")
            for ep in self.endpoints:
                if ep.name == wanted:
                    return ep
        raise ConfigError("endpoint", f"{name!r} is not an endpoint of {AWS_TARGET_KEY}",
                          f"use one of {names}, or \"\" for the first")

    def kind_for(self, *clients: Any) -> Kind:
        """The lab, or where these clients (those the activity uses) would send."""
        return LAB if self.lab is not None else kind_of(clients)

    def where(self, *clients: Any) -> str:
        if self.lab is not None:
            return f"the lab at {self.lab.api_url}"
        return ", ".join(describe(c) for c in clients)


def record_target(configuration: Configuration) -> RecordTarget:
    """The lab, or the real-AWS target of ``chaos_dynamo_aws_target``; nothing is sent.

    Raises:
        ConfigError: ``chaos_dynamo_aws_target`` is malformed, or names no region and boto3
            has none.
        LabError, SafetyError: no lab, or a lab whose addresses are not loopback.
    """
    spec = aws_target_spec(configuration)
    if spec is None:
        from chaos_dynamo.endpoint import _lab
        from chaos_dynamo.route53.backend import make_client

        info = _lab.lab_info(configuration)  # refuses a lab whose addresses are not loopback
        return RecordTarget(
            info.region, info.endpoints, info.plan_table, info.record_ttl,
            dryrun.guard(_lab.route53(info), configuration),
            dryrun.guard(make_client("dynamodb", info.api_url, info.region), configuration),
            lambda: make_client("sts", info.api_url, info.region), info)
    session, region = aws_session(spec.region, f"configuration.{AWS_TARGET_KEY}.region")
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=30)
    return RecordTarget(
        region, spec.endpoints, spec.plan_table, spec.record_ttl,
        dryrun.guard(session.client("route53", region_name=region, config=config), configuration),
        dryrun.guard(session.client("dynamodb", region_name=region, config=config), configuration),
        lambda: session.client("sts", region_name=region, config=config), None)


def aws_session(region: str | None, field: str) -> tuple[Any, str]:
    """A boto3 session on the user's default credential and endpoint chain, and its region.

    Raises:
        ConfigError: no region (``field`` names where to give one), or a profile that does
            not exist.
    """
    import boto3
    import botocore.session
    from botocore.exceptions import BotoCoreError

    global _loader
    try:
        core = botocore.session.get_session()
        # A fresh session reads the environment and profile as they are now; the service
        # models it loads are the same every time, so every session shares one loader.
        if _loader is None:
            _loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _loader)
        session = boto3.session.Session(botocore_session=core, region_name=region)
        found = region or session.region_name  # reads the profile: a missing one raises here
    except BotoCoreError as exc:
        raise ConfigError("AWS_PROFILE", f"boto3 could not start a session ({exc})",
                          "set AWS_PROFILE to a profile of your AWS config, or unset it") from None
    if not found:
        raise ConfigError(field, "is missing and boto3 has no default region",
                          "add \"region\": \"us-east-1\" (your region), or set AWS_REGION")
    return session, str(found)


def sts_for_endpoint(url: str, region: str, loopback: bool) -> Callable[[], Any]:
    """The STS client that says whose account an endpoint URL serves: on a loopback URL the
    same URL with the same dummy credentials as the activity's client (moto and LocalStack
    answer STS on their one port); anywhere else, boto3's default chain, which the guard
    accepts only as AWS's own STS, and only for a URL that is AWS's own endpoint
    (:func:`chaos_dynamo.safety.guard.require_allowed`)."""
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=5, read_timeout=10)
    if loopback:
        import boto3

        return lambda: boto3.client("sts", endpoint_url=url, region_name=region, aws_access_key_id="testing",
                                    aws_secret_access_key="testing", config=config)

    def default_chain() -> Any:
        session, found = aws_session(region, "region")
        return session.client("sts", region_name=found, config=config)

    return default_chain
