"""Finding the lab from inside an activity, and the Route 53 helpers activities share.

An activity finds the lab, in order, from the experiment's ``configuration``
(``chaos_dynamo_api``, or ``chaos_dynamo_state`` for a state file), then from
``$CHAOS_DYNAMO_API`` (printed by ``chaos-dynamo lab env``), then from the state file.
Wherever the lab's addresses come from, they are checked once, here, to be loopback.
With ``chaos_dynamo_namespace`` (or ``$CHAOS_DYNAMO_NAMESPACE``) the lab is seen through
that namespace: only its zone, endpoints, plan table and load balancers.
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
from chaos_dynamo.errors import AwsError, ConfigError, LabError, SafetyError
from chaos_dynamo.lab.state import (
    EndpointInfo,
    LabInfo,
    configured_namespace,
    read_state,
    state_path,
)
from chaos_dynamo.route53.backend import iter_record_sets, make_client
from chaos_dynamo.route53.records import RecordSet, normalize_name
from chaos_dynamo.safety import dryrun

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

        url = require_loopback_url("chaos_dynamo_api", check_api_url(bool(from_config), api))
        return in_namespace(check_loopback_info(fetch_info(url), f"the lab answering at {url} ({source})"),
                            config)
    state = config.get("chaos_dynamo_state")
    info = read_state(state)
    return in_namespace(check_loopback_info(info, f"the state file {state_path(state)}"), config)


def check_api_url(from_config: bool, value: object) -> str:
    """The lab API URL as given, if it is an ``http://HOST:PORT`` URL; ConfigError naming where
    it came from otherwise (a typo would else read as "no lab answers")."""
    field = "chaos_dynamo_api" if from_config else "$CHAOS_DYNAMO_API"
    fix = "give the lab's API URL, e.g. http://127.0.0.1:PORT (`chaos-dynamo lab env` prints it)"
    if not isinstance(value, str):
        raise ConfigError(field, f"{value!r} is not a URL", fix)
    try:
        parsed = urlparse(value)
        port = parsed.port  # raises on a port out of range
    except ValueError as exc:
        raise ConfigError(field, f"{value!r} is not a URL ({exc})", fix) from None
    if parsed.scheme != "http" or not parsed.hostname or port is None:
        raise ConfigError(field, f"{value!r} is not an http://HOST:PORT URL", fix)
    return value


def namespace_of(configuration: Configuration = None) -> str:
    """The namespace an activity acts in: configuration ``chaos_dynamo_namespace`` when it has
    the key ("" there means the lab's own parts, whatever the environment says), else
    ``$CHAOS_DYNAMO_NAMESPACE``, else "" (:func:`chaos_dynamo.lab.state.configured_namespace`,
    the same lookup verify makes; docs/namespaces.md).

    Raises:
        ConfigError: the value is not a string, or not a namespace name.
    """
    return configured_namespace(configuration)


def in_namespace(info: LabInfo, configuration: Configuration = None) -> LabInfo:
    """``info`` narrowed to the configured namespace (:func:`namespace_of`), if any.

    Raises:
        ConfigError: the namespace is not one of the lab's (the error lists them).
    """
    name = namespace_of(configuration)
    return info.scoped(name) if name else info


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


def http_json(url: str, body: Any = None, timeout: float = 10.0, *, configuration: Configuration = None) -> Any:
    """POST (with a body) or GET JSON from the lab's control API.

    A dry run (``$CHAOS_DYNAMO_DRY_RUN``, or ``chaos_dynamo_dry_run`` in ``configuration``: an
    activity that POSTs passes its own) POSTs nothing: the call is printed and answered here.
    """
    if body is not None and dryrun.active(configuration):
        return dryrun.lab_post(url, body)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise refusal(exc.code, detail) or LabError(f"lab API {url} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise LabError(f"lab API {url} unreachable: {exc}") from None


def refusal(status: int, raw: str) -> ConfigError | None:
    """The ConfigError a lab's 400 answer carries (``{"field", "problem", "fix"}``), so a bad
    argument reads the same whether the activity or the lab checked it; None for any other answer."""
    try:
        answer = json.loads(raw)
    except json.JSONDecodeError:
        return None
    if status != 400 or not isinstance(answer, dict) or not answer.get("field"):
        return None
    field, message = str(answer["field"]), str(answer.get("error", raw))
    problem = answer.get("problem") or message.removeprefix(f"{field}: ")
    return ConfigError(field, str(problem), str(answer.get("fix") or ""))
