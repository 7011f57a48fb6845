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
words), page by page with ``ExclusiveStartKey``. A :class:`TableReader` asks for pages of
at most :data:`PAGE_SIZE` items and notes when each page arrived, so each lease is judged
at the time it was read (and no single request of a big table runs for long).
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

from chaos_dynamo.clock import REAL_CLOCK, Clock
from chaos_dynamo.config import is_loopback_host
from chaos_dynamo.errors import AwsError, ConfigError, LabError
from chaos_dynamo.lease.measure import Page
from chaos_dynamo.lease.ops import LeaseItem
from chaos_dynamo.lease.schema import LeaseSchema

logger = logging.getLogger("chaostoolkit")
Configuration = Mapping[str, Any] | None

DEFAULT_REGION = "us-east-1"
PAGE_SIZE = 1000
"""Items per Scan page a :class:`TableReader` asks for (about a second per page on moto)."""
_AWS_HOST = re.compile(r"^dynamodb(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


class LeaseReader(Protocol):
    """Something that reads every lease of a table now, page by page, noting when each page
    arrived (a :class:`TableReader`; a fake in tests)."""

    def pages(self) -> list[Page]: ...


@dataclass(frozen=True)
class ClientLimits:
    """How long a client waits: seconds to connect, seconds a read may stay silent, and
    attempts per request in all (the first included)."""

    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    attempts: int = 4


PROBE_LIMITS = ClientLimits()
WATCHER_LIMITS = ClientLimits(connect_timeout=2.0, read_timeout=10.0, attempts=2)
"""The watcher's: a scan that hangs ends within about 25 s, so its thread never outlives
the control that stops it."""


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


def make_client(target: ReadTarget, limits: ClientLimits = PROBE_LIMITS) -> Any:
    """A DynamoDB client for ``target``: dummy credentials on loopback, the usual AWS
    credential chain elsewhere; ``limits`` on waiting (a few retries: a scan is idempotent)."""
    config = Config(retries={"total_max_attempts": limits.attempts, "mode": "standard"},
                    connect_timeout=limits.connect_timeout, read_timeout=limits.read_timeout)
    if target.loopback:
        return boto3.client("dynamodb", endpoint_url=target.url, region_name=target.region,
                            aws_access_key_id="testing", aws_secret_access_key="testing", config=config)
    return boto3.session.Session().client("dynamodb", endpoint_url=target.url, region_name=target.region,
                                          config=config)


def read_client(endpoint: str = "", configuration: Configuration = None,
                limits: ClientLimits = PROBE_LIMITS) -> Any:
    """A client to read the lease table at ``endpoint`` (see :func:`resolve_endpoint`)."""
    return make_client(resolve_endpoint(endpoint, configuration), limits)


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
    """Reads every lease of one table through one client (a :class:`LeaseReader`).

    ``clock`` stamps each page's arrival. Once, it warns when a scan finds the owner
    attribute on no lease at all (every lease then reads as unowned: a misnamed ``owner``?).
    """

    def __init__(self, client: Any, schema: LeaseSchema, page_size: int | None = PAGE_SIZE, *,
                 clock: Clock = REAL_CLOCK) -> None:
        self.client = client
        self.schema = schema
        self.page_size = page_size
        self.clock = clock
        self._warned = False

    @property
    def where(self) -> str:
        return _where(self.client)

    def pages(self) -> list[Page]:
        pages: list[Page] = []
        owned = total = 0
        for raw in scan_pages(self.client, self.schema, self.page_size):
            t = self.clock.now()
            pages.append(Page(t, tuple(self.schema.decode(item) for item in raw)))
            total += len(raw)
            owned += sum(self.schema.owner in item for item in raw)
        if total and not owned and not self._warned:
            self._warned = True
            logger.warning("no lease of table %s has an attribute %r: every lease reads as unowned, so no "
                           "takeover can be seen; if the owner is stored elsewhere, set owner (lease_owner)",
                           self.schema.table, self.schema.owner)
        return pages

    def scan(self) -> list[LeaseItem]:
        return [item for page in self.pages() for item in page.items]


def table_reader(schema: LeaseSchema, endpoint: str = "", configuration: Configuration = None,
                 page_size: int | None = PAGE_SIZE, *, clock: Clock = REAL_CLOCK,
                 limits: ClientLimits = PROBE_LIMITS) -> TableReader:
    """A reader of ``schema``'s table at ``endpoint`` ("" = the lab's emulator)."""
    return TableReader(read_client(endpoint, configuration, limits), schema, page_size, clock=clock)
