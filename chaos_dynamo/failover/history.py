"""A name's DNS answer history and Route 53 change history, read from the lab's HTTP API.

``GET /_chaos_dynamo/route53/answers?name=N&since=T`` lists, oldest first, one entry each
time the addresses (or failover roles) the lab DNS answers for ``N`` change::

    {"time": 1763600000.5, "name": "app.us-east-1.amazonaws.com",
     "addresses": ["127.0.0.11", "127.0.0.12"], "roles": ["PRIMARY"], "cause": "health"}

With ``since``, the entry in effect at ``since`` comes first. An unknown name is ``[]``.
``GET /_chaos_dynamo/route53/changes?name=N&since=T`` lists the accepted change batches
touching ``N`` or a name below it: ``{"time", "change_id", "zone_id", "comment", "changes":
[{"action", "name", "type", "set_identifier"}]}``.

Entries become typed values here; a malformed entry is a LabError naming its field
(``answers[3].addresses``), a lab without the routes a LabError saying how to get them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from chaos_dynamo.endpoint import _lab
from chaos_dynamo.errors import ConfigError, LabError
from chaos_dynamo.failover.measure import AnswerEntry

ANSWERS_ROUTE = "/_chaos_dynamo/route53/answers"
CHANGES_ROUTE = "/_chaos_dynamo/route53/changes"
MAX_NAME = 253


def normalize(name: object, field_name: str = "name") -> str:
    """A DNS name as the history spells it: lower case, no trailing dot.

    Raises:
        ConfigError: naming ``field_name`` for anything but a plausible DNS name.
    """
    if not isinstance(name, str):
        raise ConfigError(field_name, f"{name!r} is not a DNS name",
                          "give the name in quotes, e.g. \"app.us-east-1.amazonaws.com\"")
    cleaned = name.strip().lower().rstrip(".")
    if not cleaned or len(cleaned) > MAX_NAME or any(c.isspace() or c in "/?#&=" for c in cleaned) \
            or "" in cleaned.split("."):
        raise ConfigError(field_name, f"{name!r} is not a DNS name",
                          "give a name such as \"app.us-east-1.amazonaws.com\" (a trailing dot is optional)")
    return cleaned


@dataclass(frozen=True)
class RecordChange:
    """One change of an accepted batch."""

    action: str
    name: str
    type: str
    set_identifier: str = ""


@dataclass(frozen=True)
class ChangeBatch:
    """An accepted Route 53 change batch touching the name, applied at ``time``."""

    time: float
    change_id: str
    zone_id: str
    comment: str
    changes: tuple[RecordChange, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "change_id": self.change_id, "zone_id": self.zone_id,
                "comment": self.comment,
                "changes": [{"action": c.action, "name": c.name, "type": c.type,
                             "set_identifier": c.set_identifier} for c in self.changes]}


class HistorySource(Protocol):
    """Where probes read a name's history (the lab's HTTP API: :class:`HttpHistory`)."""

    def answers(self, name: str, since: float) -> list[AnswerEntry]: ...
    def changes(self, name: str, since: float) -> list[ChangeBatch]: ...
    def names(self, at: float) -> list[str]: ...


def _malformed(where: str, problem: str) -> LabError:
    return LabError(f"the lab's Route 53 history is malformed: {where}: {problem}; is the lab running "
                    "this version of chaos-dynamo? (`chaos-dynamo lab down`, then `lab up`)")


def _field(raw: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in raw:
        raise _malformed(f"{where}.{key}", f"missing in {dict(raw)!r}")
    return raw[key]


def _time(raw: Mapping[str, Any], where: str) -> float:
    value = _field(raw, "time", where)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _malformed(f"{where}.time", f"{value!r} is not a time in epoch seconds")
    return float(value)


def _strings(raw: Mapping[str, Any], key: str, where: str, default: Any = None) -> frozenset[str]:
    value = raw.get(key, default) if default is not None else _field(raw, key, where)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _malformed(f"{where}.{key}", f"{value!r} is not a list of strings")
    return frozenset(value)


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _malformed(f"{where}.{key}", f"{value!r} is not a string")
    return value


def _object(raw: object, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise _malformed(where, f"{raw!r} is not an object")
    return raw


def parse_answer(raw: object, where: str = "answers[0]") -> AnswerEntry:
    """One answer entry (``roles`` and ``cause`` may be absent)."""
    entry = _object(raw, where)
    return AnswerEntry(time=_time(entry, where), addresses=_strings(entry, "addresses", where),
                       roles=_strings(entry, "roles", where, default=[]),
                       cause=_text(entry, "cause", where) or "change")


def parse_batch(raw: object, where: str = "changes[0]") -> ChangeBatch:
    """One accepted change batch."""
    batch = _object(raw, where)
    changes = _field(batch, "changes", where)
    if not isinstance(changes, list):
        raise _malformed(f"{where}.changes", f"{changes!r} is not a list")
    parsed = []
    for i, item in enumerate(changes):
        at = f"{where}.changes[{i}]"
        change = _object(item, at)
        parsed.append(RecordChange(_text(change, "action", at), _text(change, "name", at),
                                   _text(change, "type", at), _text(change, "set_identifier", at)))
    return ChangeBatch(_time(batch, where), _text(batch, "change_id", where), _text(batch, "zone_id", where),
                       _text(batch, "comment", where), tuple(parsed))


class HttpHistory:
    """The lab's control API at ``api_url`` (a loopback URL: see ``_lab.lab_info``)."""

    def __init__(self, api_url: str, timeout: float = 10.0) -> None:
        self.api = api_url.rstrip("/")
        self.timeout = timeout

    def _get(self, route: str, query: Mapping[str, Any], what: str) -> list[Any]:
        url = f"{self.api}{route}?{urlencode({k: v for k, v in query.items() if v is not None})}"
        try:
            answer = _lab.http_json(url, timeout=self.timeout)
        except LabError as exc:
            if " answered 404" in str(exc):
                raise LabError(f"the lab at {self.api} keeps no {what} (GET {route} answered 404); "
                               "restart it with this version of chaos-dynamo (`chaos-dynamo lab down`, "
                               "then `lab up`)") from None
            raise
        if not isinstance(answer, list):
            raise _malformed(route, f"{answer!r} is not a list")
        return answer

    def answers(self, name: str, since: float) -> list[AnswerEntry]:
        """``name``'s entries: the one in effect at ``since`` first, then every later one."""
        raw = self._get(ANSWERS_ROUTE, {"name": name, "since": repr(since)}, "DNS answer history")
        return [parse_answer(entry, f"answers[{i}]") for i, entry in enumerate(raw)]

    def changes(self, name: str, since: float) -> list[ChangeBatch]:
        """Accepted change batches touching ``name`` or a name below it, from ``since`` on."""
        raw = self._get(CHANGES_ROUTE, {"name": name, "since": repr(since)}, "Route 53 change history")
        return [parse_batch(batch, f"changes[{i}]") for i, batch in enumerate(raw)]

    def names(self, at: float) -> list[str]:
        """Every name the lab DNS answered for at ``at`` (for error messages)."""
        raw = self._get(ANSWERS_ROUTE, {"since": repr(at)}, "DNS answer history")
        return sorted({str(e["name"]) for e in raw if isinstance(e, Mapping) and e.get("name")})
