"""Dry run: print the exact writes a run would send, and send none.

Dry run is on when the environment has ``CHAOS_DYNAMO_DRY_RUN=1`` (what
``chaos-dynamo run --dry-run`` sets for its ``chaos run``; set it yourself for a plain
``chaos run``), or when an activity's configuration has ``"chaos_dynamo_dry_run": true``.

Every write a destructive activity could make goes through one of three send points, and
each is switched here:

- boto3 clients of the activities that can reach AWS (``endpoint.actions``,
  ``lease.actions.expire_leases``) are made through :func:`guard`: in a dry run a handler on
  the client answers every operation that is not a read (see :func:`is_read_only`) itself,
  after printing it, so the request is never built into an HTTP call; a second handler just
  before sending refuses any such request that got past the first (a SafetyError, never a
  silent send). Reads (ListResourceRecordSets, Scan, GetCallerIdentity...) go out as usual:
  the batches printed are computed from the real, current records.
- the lab's control API (fault knobs, the control plane): ``POST``\\ s are answered here by
  :func:`lab_post` instead of being sent (``endpoint._lab.http_json``,
  ``control._client.call``). Every activity hands them its configuration, so the
  configuration key alone makes every one of them dry.

A dry run is never judged as a real one: ``chaos-dynamo verify`` and a real ``chaos-dynamo
run`` refuse to start while the variable is on (:func:`refuse_env_in_real_run`), and the
runner's safety net passes :data:`NEVER`, so its restores are real whatever the variable says.

Each write is printed on one line of standard output, in order::

    chaos-dynamo dry-run: route53 ChangeResourceRecordSets {"HostedZoneId": "Z...", "ChangeBatch": {...}}
    chaos-dynamo dry-run: dynamodb UpdateItem {"TableName": "leases", "Key": {...}, ...}
    chaos-dynamo dry-run: lab POST {"url": "http://127.0.0.1:.../_chaos_dynamo/lb/lb-1/faults", "body": {...}}

:func:`parse` reads them back. Waits for a change to propagate and holds
(``empty_endpoint_for``'s outage) are skipped: nothing was sent to wait for.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos_dynamo.clock import REAL_CLOCK
from chaos_dynamo.errors import ConfigError, SafetyError

logger = logging.getLogger("chaostoolkit")

ENV = "CHAOS_DYNAMO_DRY_RUN"
CONFIG_KEY = "chaos_dynamo_dry_run"
PREFIX = "chaos-dynamo dry-run:"
"""Every line a dry run prints about a write starts with this."""

_OFF = ("", "0", "false", "no", "off")
_ON = ("1", "true", "yes", "on")
_READ_PREFIXES = ("Get", "List", "Describe")
_READS = frozenset({"Scan", "Query", "BatchGetItem", "TransactGetItems", "TestDNSAnswer"})
_PARAMS = "chaos_dynamo_dry_run_params"
_GUARDED = "_chaos_dynamo_dry_run_guarded"
_change_ids = itertools.count(1)


class _NeverDry:
    def __repr__(self) -> str:
        return "chaos_dynamo.safety.dryrun.NEVER"


NEVER: Any = _NeverDry()
"""As configuration ``chaos_dynamo_dry_run``: never a dry run, whatever ``$CHAOS_DYNAMO_DRY_RUN``
says. For chaos-dynamo's own safety net (``runner.ensure_restored``), whose restores must be
real; an experiment cannot give it (JSON has no such value)."""


def active(configuration: Mapping[str, Any] | None = None) -> bool:
    """Whether this is a dry run: ``$CHAOS_DYNAMO_DRY_RUN`` or configuration ``chaos_dynamo_dry_run``
    (:data:`NEVER` there: never).

    An unrecognised value of the variable counts as on (a typo must not make a run real).

    Raises:
        ConfigError: ``chaos_dynamo_dry_run`` in the configuration is not true/false.
    """
    if configuration and configuration.get(CONFIG_KEY) is NEVER:
        return False
    env = os.environ.get(ENV, "").strip().lower()
    if env not in _OFF:
        return True
    if not configuration or CONFIG_KEY not in configuration:
        return False
    value = configuration[CONFIG_KEY]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _ON + _OFF:
        return value.strip().lower() in _ON
    raise ConfigError(f"configuration.{CONFIG_KEY}", f"{value!r} is not true/false",
                      "use true (print what would be sent, send nothing) or false")


def refuse_env_in_real_run(command: str) -> None:
    """Refuse a real run (``chaos-dynamo verify``, ``run`` without ``--dry-run``) while
    ``$CHAOS_DYNAMO_DRY_RUN`` is on: every chaos it starts would inherit it and send nothing,
    yet be judged as a real run (an experiment expected to hold would pass with no fault).

    Raises:
        ConfigError: the variable is on (any value but "", 0, false, no, off).
    """
    value = os.environ.get(ENV, "")
    if value.strip().lower() not in _OFF:
        raise ConfigError(f"${ENV}", f"is set ({value!r}): every activity of this {command} would send nothing, "
                          "yet the run would be judged as a real one",
                          f"unset {ENV} for a real run, or preview the writes with "
                          "`chaos-dynamo run --dry-run EXPERIMENT`")


def is_read_only(operation: str) -> bool:
    """True for an AWS operation that changes nothing (Get*, List*, Describe*, Scan, Query...)."""
    return operation.startswith(_READ_PREFIXES) or operation in _READS


def announce(service: str, operation: str, params: Mapping[str, Any]) -> str:
    """Print one write a dry run did not send, as one prefixed line; return the line."""
    line = f"{PREFIX} {service} {operation} {json.dumps(params, sort_keys=True, default=str)}"
    print(line, file=sys.stdout, flush=True)
    logger.info("dry run: did not send %s %s", service, operation)
    return line


def parse(text: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The ``(service, operation, params)`` of every dry-run line in ``text``, in order."""
    found = []
    for line in text.splitlines():
        if not line.startswith(PREFIX):
            continue
        service, operation, params = line[len(PREFIX):].strip().split(" ", 2)
        found.append((service, operation, json.loads(params)))
    return found


def guard(client: Any, configuration: Mapping[str, Any] | None = None) -> Any:
    """``client``, made unable to write in a dry run (see the module docstring); unchanged otherwise."""
    if not active(configuration) or getattr(client, _GUARDED, False):
        return client
    events = client.meta.events
    events.register("before-parameter-build", _keep_params)
    events.register("before-call", _answer_write)
    events.register_first("before-send", _refuse_write)  # before anything that could answer or send
    setattr(client, _GUARDED, True)
    return client


def _operation(event_name: str) -> str:
    return event_name.rsplit(".", 1)[-1]


def _keep_params(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
    context[_PARAMS] = params  # the same dict later handlers (e.g. Route 53's id fix) adjust


def _answer_write(model: Any, context: dict[str, Any], event_name: str, **kwargs: Any) -> Any:
    operation = _operation(event_name)
    if is_read_only(operation):
        return None
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    params = copy.deepcopy(context.get(_PARAMS, {}))
    service = model.service_model.endpoint_prefix
    announce(service, operation, params)
    return AWSResponse("", 200, HTTPHeaders(), None), _fake_answer(operation, params)


def _refuse_write(request: Any, event_name: str, **kwargs: Any) -> None:
    operation = _operation(event_name)
    if not is_read_only(operation):
        raise SafetyError(f"dry run: refusing to send {operation} to {getattr(request, 'url', '?')}; "
                          "a dry run sends no writes")


def _fake_answer(operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    if operation == "ChangeResourceRecordSets":
        batch = params.get("ChangeBatch", {})
        return {"ChangeInfo": {"Id": f"/change/DRYRUN{next(_change_ids)}", "Status": "INSYNC",
                               "SubmittedAt": datetime.fromtimestamp(REAL_CLOCK.now(), UTC), "Comment": batch.get("Comment", "")}}
    return {}


class DryRunAnswer(dict[str, Any]):
    """What a dry-run lab call answers: ``{"dry_run": true, "url", "body"}``; any other key reads
    as None, so an action that reads a field of the answer goes on."""

    def __missing__(self, key: str) -> None:
        return None


def lab_post(url: str, body: Any) -> DryRunAnswer:
    """Print the lab control call a dry run does not make; the answer an action gets instead."""
    announce("lab", "POST", {"url": url, "body": body})
    return DryRunAnswer(dry_run=True, url=url, body=body)


def declared(experiment: Mapping[str, Any]) -> bool:
    """Whether an experiment's own configuration asks for a dry run (``chaos_dynamo_dry_run``).

    Raises:
        ConfigError: the value is not true/false.
    """
    config = experiment.get("configuration")
    if not isinstance(config, Mapping) or CONFIG_KEY not in config:
        return False
    value = config[CONFIG_KEY]
    return _env_typed(value) if isinstance(value, Mapping) else active({CONFIG_KEY: value})


def _env_typed(value: Mapping[str, Any]) -> bool:
    """A Chaos Toolkit ``{"type": "env", "key": ..., "default": ...}`` value: on if the variable
    (or else the default) says so."""
    key = value.get("key")
    raw = os.environ.get(str(key)) if key else None
    raw = raw if raw is not None else value.get("default", False)
    return active({CONFIG_KEY: raw if isinstance(raw, (bool, str)) else bool(raw)})


def summary(journal_path: Path) -> tuple[bool, list[str]]:
    """How a dry run went, from its journal: whether every activity ran (each would-be write
    printed), and the lines to show. A dry run has no verdict: nothing was broken."""
    try:
        journal = json.loads(journal_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return False, [f"no journal from chaos ({exc})"]
    status = str(journal.get("status", "")) if isinstance(journal, dict) else ""
    records = [r for key in ("run", "rollbacks") for r in (journal.get(key) or []) if isinstance(r, dict)]
    lines = [f"chaos status: {status or 'unknown'}; {len(records)} activities ran"]
    failed = [r for r in records if r.get("status") == "failed"]
    for record in failed:
        name = record.get("activity", {}).get("name", "?")
        exception = record.get("exception") or []
        last = str(exception[-1]).strip() if exception else "failed"
        lines.append(f"activity {name} failed: {last}")
    return status == "completed" and not failed, lines
