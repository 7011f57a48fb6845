"""Finding the lab from inside an activity, and the Route 53 helpers activities share.

An activity finds the lab, in order, from the experiment's ``configuration``
(``chaos_dynamo_api``, or ``chaos_dynamo_state`` for a state file), then from
``$CHAOS_DYNAMO_API`` (printed by ``chaos-dynamo lab env``), then from the state file.
Wherever the lab's addresses come from, they are checked once, here, to be loopback.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from chaos_dynamo.clock import REAL_CLOCK, Clock, wait_until
from chaos_dynamo.config import is_loopback_host
from chaos_dynamo.errors import AwsError, LabError, SafetyError
from chaos_dynamo.lab.state import EndpointInfo, LabInfo, read_state, state_path
from chaos_dynamo.route53.backend import iter_record_sets, make_client
from chaos_dynamo.route53.records import RecordSet, normalize_name

logger = logging.getLogger("chaostoolkit")
Configuration = Mapping[str, Any] | None


def lab_info(configuration: Configuration = None) -> LabInfo:
    """The running lab's addresses; LabError saying how to start one when there is none.

    Raises:
        SafetyError: the API URL, the DNS host or the emulator URL is not a loopback
            address, whichever of configuration, environment or state file gave it.
    """
    config = dict(configuration or {})
    from_config = config.get("chaos_dynamo_api")
    api = from_config or (None if config.get("chaos_dynamo_state") else os.environ.get("CHAOS_DYNAMO_API"))
    if api:
        source = "configuration chaos_dynamo_api" if from_config else "$CHAOS_DYNAMO_API"
        # The control API exists only on a lab; never send lab traffic anywhere else.
        from chaos_dynamo.lab.lab import require_loopback_url

        url = require_loopback_url("chaos_dynamo_api", str(api))
        return check_loopback_info(fetch_info(url), f"the lab answering at {url} ({source})")
    state = config.get("chaos_dynamo_state")
    info = read_state(state)
    return check_loopback_info(info, f"the state file {state_path(state)}")


def check_loopback_info(info: LabInfo, source: str) -> LabInfo:
    """Return ``info`` if every address in it is loopback; SafetyError naming the one that is not."""
    for field, host, value in (
        ("api_url", _url_host(info.api_url), info.api_url),
        ("dns_host", info.dns_host, info.dns_host),
        ("emulator_url", _url_host(info.emulator_url), info.emulator_url),
    ):
        if not isinstance(host, str) or not is_loopback_host(host):
            raise SafetyError(
                f"{field}: refusing to use {value!r} from {source}: it is not a loopback address "
                "(127.x.x.x or localhost). "
                "chaos-dynamo acts only on a lab at a loopback address; point the experiment at "
                "the lab `chaos-dynamo lab up` started"
            )
    return info


def _url_host(url: object) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        return urlparse(url).hostname
    except ValueError:
        return None


def fetch_info(api_url: str, timeout: float = 5.0) -> LabInfo:
    url = api_url.rstrip("/") + "/_chaos_dynamo/info"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback lab
            return LabInfo.from_json(response.read().decode())
    except (urllib.error.URLError, OSError, ValueError, TypeError, KeyError) as exc:
        raise LabError(f"no lab answers at {api_url} ({exc}); start one with "
                       "`chaos-dynamo lab up --detach` and `eval \"$(chaos-dynamo lab env)\"`") from None


def route53(info: LabInfo) -> Any:
    return make_client("route53", info.api_url, info.region)


def records_at(client: Any, zone_id: str, name: str) -> list[RecordSet]:
    """The record sets whose name is exactly ``name`` (listing starts there, stops past it)."""
    wanted = normalize_name(name)
    return list(itertools.takewhile(lambda r: r.name == wanted, iter_record_sets(client, zone_id, wanted)))


def change(client: Any, endpoint: EndpointInfo, changes: list[dict[str, Any]], comment: str) -> str:
    """Send one change batch; return the change id."""
    try:
        response = client.change_resource_record_sets(
            HostedZoneId=endpoint.zone_id, ChangeBatch={"Comment": comment, "Changes": changes},
        )
    except ClientError as exc:
        raise AwsError.from_client_error(exc, "ChangeResourceRecordSets") from exc
    return str(response["ChangeInfo"]["Id"])


def wait_insync(client: Any, change_id: str, timeout: float, clock: Clock = REAL_CLOCK) -> bool:
    """Wait until Route 53 reports the change INSYNC (the lab DNS answers from it)."""
    def insync() -> bool:
        return bool(client.get_change(Id=change_id)["ChangeInfo"]["Status"] == "INSYNC")

    return wait_until(insync, timeout, interval=0.05, clock=clock)


def http_json(url: str, body: Any = None, timeout: float = 10.0) -> Any:
    """POST (with a body) or GET JSON from the lab's control API."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise LabError(f"lab API {url} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise LabError(f"lab API {url} unreachable: {exc}") from None
