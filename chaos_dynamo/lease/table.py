"""Reading the user's lease table: a consistent, paged Scan of the schema's attributes.

The probes never write (only the ``expire_leases`` fault does). Where they read:

- ``endpoint=""``: the lab's DynamoDB emulator, directly (``LabInfo.emulator_url``). The
  LB fleet and the lab DNS sit in front of the *service*; reading behind them means the
  probes see the table while the endpoint is empty or slow, and their reads are never
  counted as the service's traffic.
- any other URL: read as given (a local DynamoDB, or a real AWS endpoint such as
  ``https://dynamodb.us-east-1.amazonaws.com``) with the usual AWS credential chain;
  dummy credentials only for a loopback URL.

A scan asks for ``ConsistentRead`` and only the schema's attributes (through
``ExpressionAttributeNames``: names such as ``owner`` or ``version`` may be reserved
words), page by page with ``ExclusiveStartKey``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chaos_dynamo.config import is_loopback_host
from chaos_dynamo.errors import AwsError, ConfigError, LabError
from chaos_dynamo.lease.ops import LeaseItem
from chaos_dynamo.lease.schema import LeaseSchema

logger = logging.getLogger("chaostoolkit")
Configuration = Mapping[str, Any] | None

DEFAULT_REGION = "us-east-1"
_AWS_HOST = re.compile(r"^dynamodb(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


class LeaseReader(Protocol):
    """Something that returns every lease of a table now (a :class:`TableReader`; a fake in tests)."""

    def scan(self) -> list[LeaseItem]: ...


@dataclass(frozen=True)
class ReadTarget:
    """Where the lease table is read: a URL, its region, and whether it is the lab's emulator."""

    url: str
    region: str
    loopback: bool
    from_lab: bool


def resolve_endpoint(endpoint: object, configuration: Configuration = None,
                     field_name: str = "endpoint") -> ReadTarget:
    """``""`` -> the lab's emulator (from the lab state file or API the configuration names);
    a URL -> that URL.

    Raises:
        ConfigError: ``endpoint`` is not "" or an http(s) URL.
        LabError: ``endpoint`` is "" and no lab is running.
    """
    if endpoint is None or endpoint == "":
        from chaos_dynamo.endpoint._lab import lab_info

        info = lab_info(configuration)
        return ReadTarget(info.emulator_url.rstrip("/"), info.region, True, True)
    if not isinstance(endpoint, str):
        raise ConfigError(field_name, f"{endpoint!r} is not a URL",
                          "give \"\" (the lab's DynamoDB) or a URL such as http://127.0.0.1:8000")
    text = endpoint.strip()
    try:
        parsed = urlparse(text)
        host = parsed.hostname or ""
        parsed.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ConfigError(field_name, f"{endpoint!r} is not a URL ({exc})",
                          "give \"\" (the lab's DynamoDB) or a URL such as http://127.0.0.1:8000") from None
    if parsed.scheme not in ("http", "https") or not host:
        raise ConfigError(field_name, f"{endpoint!r} is not an http(s) URL",
                          "give \"\" (the lab's DynamoDB) or a URL such as http://127.0.0.1:8000")
    aws = _AWS_HOST.match(host.lower())
    region = (aws.group(1) if aws else None) or os.environ.get("AWS_REGION") \
        or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    return ReadTarget(text.rstrip("/"), region, is_loopback_host(host), False)


def make_client(target: ReadTarget) -> Any:
    """A DynamoDB client for ``target``: dummy credentials on loopback, the usual AWS
    credential chain elsewhere; a few retries (a scan is idempotent)."""
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60)
    if target.loopback:
        return boto3.client("dynamodb", endpoint_url=target.url, region_name=target.region,
                            aws_access_key_id="testing", aws_secret_access_key="testing", config=config)
    return boto3.session.Session().client("dynamodb", endpoint_url=target.url, region_name=target.region,
                                          config=config)


def read_client(endpoint: str = "", configuration: Configuration = None) -> Any:
    """A client to read the lease table at ``endpoint`` (see :func:`resolve_endpoint`)."""
    return make_client(resolve_endpoint(endpoint, configuration))


def _where(client: Any) -> str:
    return str(getattr(getattr(client, "meta", None), "endpoint_url", "") or "the endpoint")


def translate(exc: Exception, schema: LeaseSchema, client: Any, operation: str) -> Exception:
    """A scan's botocore error as the error a user can act on."""
    where = _where(client)
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "ResourceNotFoundException":
            return ConfigError("table", f"there is no table {schema.table!r} at {where}",
                               "set table (lease_table) to the name of your lease table, and endpoint "
                               "(lease_endpoint) to where it is (\"\" for the lab's DynamoDB)")
        return AwsError.from_client_error(exc, operation)
    return LabError(f"endpoint: could not read table {schema.table!r} at {where} "
                    f"({type(exc).__name__}: {exc}); is it running? (lease_endpoint \"\" reads the "
                    "lab's DynamoDB)")


def scan_pages(client: Any, schema: LeaseSchema, page_size: int | None = None,
               extra: Sequence[str] = ()) -> Iterator[list[dict[str, Any]]]:
    """The table's items page by page (raw attribute values): the schema's attributes and
    ``extra`` ones, consistently read.

    Raises:
        ConfigError: the table does not exist (naming ``table`` and the fix).
        AwsError: any other error the endpoint answered.
        LabError: nothing answered at the endpoint.
    """
    if page_size is not None and (isinstance(page_size, bool) or not isinstance(page_size, int)
                                  or page_size < 1):
        raise ConfigError("page_size", f"{page_size!r} is not a page size", "give a whole number above 0")
    names = list(dict.fromkeys((*schema.attributes, *extra)))
    aliases = {f"#a{i}": name for i, name in enumerate(names)}
    request: dict[str, Any] = {"TableName": schema.table, "ConsistentRead": True,
                               "ProjectionExpression": ", ".join(aliases),
                               "ExpressionAttributeNames": aliases}
    if page_size is not None:
        request["Limit"] = page_size
    while True:
        try:
            page = client.scan(**request)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, schema, client, "Scan") from exc
        yield list(page.get("Items", []))
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        request["ExclusiveStartKey"] = last


def scan_items(client: Any, schema: LeaseSchema, page_size: int | None = None,
               extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every item of the table, raw (see :func:`scan_pages`)."""
    return [item for page in scan_pages(client, schema, page_size, extra) for item in page]


def scan_leases(client: Any, schema: LeaseSchema, page_size: int | None = None) -> list[LeaseItem]:
    """Every lease of the table, decoded (ConfigError naming the schema field for an item
    that lacks an attribute or holds the wrong type)."""
    return [schema.decode(item) for page in scan_pages(client, schema, page_size) for item in page]


class TableReader:
    """Reads every lease of one table through one client (a :class:`LeaseReader`)."""

    def __init__(self, client: Any, schema: LeaseSchema, page_size: int | None = None) -> None:
        self.client = client
        self.schema = schema
        self.page_size = page_size

    @property
    def where(self) -> str:
        return _where(self.client)

    def scan(self) -> list[LeaseItem]:
        return scan_leases(self.client, self.schema, self.page_size)


def table_reader(schema: LeaseSchema, endpoint: str = "", configuration: Configuration = None,
                 page_size: int | None = None) -> TableReader:
    """A reader of ``schema``'s table at ``endpoint`` ("" = the lab's emulator)."""
    return TableReader(read_client(endpoint, configuration), schema, page_size)
