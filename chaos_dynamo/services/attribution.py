"""Whose traffic is it? Pure rules that attribute DNS queries and LB requests to services.

An LB request belongs to, in order:

1. the service named by its ``X-Chaos-Dynamo-Service`` header (any client can send it);
2. the SDK app id in its ``User-Agent`` (``app/<id>``): every AWS SDK adds it when
   ``AWS_SDK_UA_APP_ID`` (or the ``sdk_ua_app_id`` setting) is set;
3. the service whose source address it came from.

A DNS query carries none of these, so it belongs to the service whose source address it
came from (the Python shim sends a service's lookups from its own 127.0.0.x address).
Anything else is ``None``: unattributed, and still counted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol

SERVICE_HEADER = "X-Chaos-Dynamo-Service"

_APP_ID = re.compile(r"(?:^|\s)app/([^\s]+)")


class AttributableRequest(Protocol):
    """What attribution reads of an LB request."""

    @property
    def client(self) -> str: ...
    @property
    def user_agent(self) -> str: ...
    @property
    def service(self) -> str: ...


class AttributableQuery(Protocol):
    """What attribution reads of a DNS query."""

    @property
    def client(self) -> str: ...


def app_id(user_agent: str) -> str | None:
    """The SDK app id in a User-Agent (``... app/checkout ...`` -> ``checkout``), if any."""
    match = _APP_ID.search(user_agent or "")
    return match.group(1) if match else None


def request_service(record: AttributableRequest, by_address: Mapping[str, str]) -> str | None:
    """The service an LB request belongs to, or None (see the module's rules)."""
    return (getattr(record, "service", "") or app_id(record.user_agent)
            or by_address.get(record.client))


def query_service(record: AttributableQuery, by_address: Mapping[str, str]) -> str | None:
    """The service a DNS query belongs to (by source address), or None."""
    return by_address.get(record.client)
