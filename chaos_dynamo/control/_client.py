"""How Chaos Toolkit activities reach the lab's control-plane API (``/_chaos_dynamo/control/``).

The lab is found as every activity finds it (:func:`chaos_dynamo.endpoint._lab.lab_info`,
which refuses any address that is not loopback). A 400 answer becomes the ConfigError the
lab raised, with its field, so a typo in an experiment reads the same in the journal as a
bad argument checked here; a 409 (the control plane is busy) becomes a LabError.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Dict, List  # noqa: UP035 - see JsonDict

from chaos_dynamo.endpoint import _lab
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.safety import dryrun

Configuration = Mapping[str, Any] | None

# chaoslib's discovery names a return type only for the typing aliases ("mapping", "list");
# ``dict[str, Any]`` would be reported as "object".
JsonDict = Dict[str, Any]  # noqa: UP006
JsonList = List[Any]  # noqa: UP006


def call(route: str, body: Mapping[str, Any] | None = None, *, configuration: Configuration = None,
         timeout: float = 30.0) -> Any:
    """POST ``body`` (or GET without one) to the lab's control route; the JSON answer."""
    info = _lab.lab_info(configuration)  # refuses a lab whose addresses are not loopback
    if info.namespace and body is not None:
        # The Planner and Enactors manage the lab's own endpoints, not a namespace's.
        raise ConfigError("chaos_dynamo_namespace",
                          f"the DNS control plane is the whole lab's (it manages the lab's own endpoints), "
                          f"so {route!r} cannot run in namespace {info.namespace!r}",
                          "run control-plane experiments without chaos_dynamo_namespace")
    url = f"{info.api_url}/_chaos_dynamo/control/{route}"
    if body is not None and dryrun.active(configuration):
        return dryrun.lab_post(url, dict(body))
    data = None if body is None else json.dumps(dict(body)).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback lab
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read().decode(errors="replace")
        try:
            answer = json.loads(raw)
        except json.JSONDecodeError:
            answer = {"error": raw}
        message = str(answer.get("error", raw)) if isinstance(answer, dict) else raw
        refused = _lab.refusal(exc.code, raw)
        if refused is not None:
            raise refused from None
        raise LabError(f"the lab's control API ({route}) answered {exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise LabError(f"the lab's control API at {url} did not answer ({exc}); is the lab running? "
                       "check with `chaos-dynamo lab status`") from None


def check_timeout(timeout: float, low: float = 1.0, high: float = 600.0) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not low <= timeout <= high:
        raise ConfigError("timeout", f"{timeout!r} is not a duration in seconds", f"use {low} to {high}")
    return float(timeout)
