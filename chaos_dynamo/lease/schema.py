"""The user's lease table, described by configuration: which attribute means what.

A lease table has one item per lease. Only four things are read from an item, each from
an attribute the schema names:

- ``key``: the lease's identity (the table's hash key; a string, number or binary);
- ``owner``: who holds it (a string; a number is read as its decimal text);
- ``expiry``: until when, in ``expiry_unit``: ``s`` (epoch seconds, a number, possibly
  fractional), ``ms`` (epoch milliseconds) or ``iso`` (an ISO-8601 string such as
  ``2025-10-20T07:00:00Z``; a time without a timezone is taken as UTC). Numbers may be
  stored as DynamoDB numbers (N) or as strings holding a number (S);
- ``version``: a number that grows by one per successful renewal or acquisition (a
  fencing token); ``""`` when the table has none (then goodput cannot be measured).

Items are DynamoDB's low-level form (``{"owner": {"S": "a"}, ...}``), as a Scan returns them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lease.ops import LeaseItem

EXPIRY_UNITS = ("s", "ms", "iso")
DEFAULT_TABLE = "chaos-dynamo-leases"
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_SHOWN = 60  # characters of an offending value shown in a message


@dataclass(frozen=True)
class LeaseSchema:
    """Where a lease's parts live in the user's table (see the module docstring).

    Build it with :meth:`from_arguments`, which checks every value.
    """

    table: str
    key: str = "lease_id"
    owner: str = "owner"
    expiry: str = "expires_at"
    expiry_unit: str = "s"
    version: str = "version"

    @classmethod
    def from_arguments(cls, table: object, key: object = "lease_id", owner: object = "owner",
                       expiry: object = "expires_at", expiry_unit: object = "s",
                       version: object = "version", *, prefix: str = "") -> LeaseSchema:
        """A checked schema; ConfigError naming the argument (``prefix`` + field) otherwise.

        ``prefix`` is ``"lease_"`` when the values come from configuration keys.
        """
        if not isinstance(table, str) or not table.strip():
            raise ConfigError(f"{prefix}table", f"{table!r} is not a table name",
                              "give the name of your lease table, e.g. \"chaos-dynamo-leases\"")
        table = table.strip()
        if not _TABLE_NAME.match(table):
            raise ConfigError(f"{prefix}table", f"{table!r} is not a DynamoDB table name",
                              "use 3-255 characters of a-z, A-Z, 0-9, '_', '-' and '.'")
        names: dict[str, str] = {}
        for field_name, value in (("key", key), ("owner", owner), ("expiry", expiry)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{prefix}{field_name}", f"{value!r} is not an attribute name",
                                  f"give the name of the attribute holding the lease's {field_name}")
            names[field_name] = value.strip()
        if not isinstance(version, str):
            raise ConfigError(f"{prefix}version", f"{version!r} is not an attribute name",
                              "give the name of the attribute holding the lease's version, or \"\" "
                              "if the table has none")
        unit = expiry_unit.strip().lower() if isinstance(expiry_unit, str) else expiry_unit
        if unit not in EXPIRY_UNITS:
            raise ConfigError(f"{prefix}expiry_unit", f"{expiry_unit!r} is not a unit",
                              "use \"s\" (epoch seconds), \"ms\" (epoch milliseconds) or \"iso\" "
                              "(ISO-8601 text)")
        version = version.strip()
        used = [names["key"], names["owner"], names["expiry"]] + ([version] if version else [])
        if len(set(used)) != len(used):
            raise ConfigError(f"{prefix}key", f"two schema fields name the same attribute ({used})",
                              "give key, owner, expiry and version distinct attribute names")
        return cls(table, names["key"], names["owner"], names["expiry"], str(unit), version)

    @property
    def attributes(self) -> tuple[str, ...]:
        """The attributes a scan projects (key, owner, expiry, and version if any)."""
        return (self.key, self.owner, self.expiry) + ((self.version,) if self.version else ())

    def describe(self) -> dict[str, str]:
        return {"table": self.table, "key": self.key, "owner": self.owner, "expiry": self.expiry,
                "expiry_unit": self.expiry_unit, "version": self.version}

    # --- reading an item ---------------------------------------------------------------

    def item_key(self, item: Mapping[str, Any]) -> str:
        """The lease's key as text (for messages and for tracking a lease across scans)."""
        value = item.get(self.key)
        if not isinstance(value, Mapping) or len(value) != 1:
            shown = _short(dict(item))
            raise ConfigError("key", f"item {shown} has no attribute {self.key!r}",
                              f"set key to the attribute that identifies a lease in table {self.table}")
        kind, raw = next(iter(value.items()))
        if kind in ("S", "N"):
            return str(raw)
        if kind == "B":
            return raw.hex() if isinstance(raw, bytes | bytearray) else str(raw)
        raise ConfigError("key", f"item key attribute {self.key!r} is of type {kind}, not a string, "
                          "number or binary", "set key to the table's hash key attribute")

    def decode(self, item: Mapping[str, Any]) -> LeaseItem:
        """One scanned item as a :class:`LeaseItem` (expiry in epoch seconds; version 0 when
        the schema has none).

        Raises:
            ConfigError: an attribute is missing or of the wrong type; the message names the
                schema field, the attribute, the item's key and the fix.
        """
        key = self.item_key(item)
        owner = self._owner(item, key)
        expires_at = self.expiry_seconds(item, key)
        version = self._version(item, key) if self.version else 0
        return LeaseItem(key, owner, expires_at, version)

    def _attribute(self, item: Mapping[str, Any], field_name: str, attribute: str,
                   key: str) -> tuple[str, Any]:
        value = item.get(attribute)
        if not isinstance(value, Mapping) or len(value) != 1:
            raise ConfigError(field_name, f"item {key} has no attribute {attribute!r}",
                              f"set {_argument(field_name)} to the attribute holding the {_meaning(field_name)}")
        kind, raw = next(iter(value.items()))
        return str(kind), raw

    def _owner(self, item: Mapping[str, Any], key: str) -> str:
        kind, raw = self._attribute(item, "owner", self.owner, key)
        if kind in ("S", "N"):
            return str(raw)
        if kind == "NULL":
            return ""
        raise _wrong_type("owner", self.owner, key, kind, "a string (S)", raw)

    def _version(self, item: Mapping[str, Any], key: str) -> int:
        kind, raw = self._attribute(item, "version", self.version, key)
        number = _number(raw) if kind in ("N", "S") else None
        if number is None or number != number.to_integral_value():
            raise _wrong_type("version", self.version, key, kind, "a whole number (N)", raw)
        return int(number)

    def expiry_seconds(self, item: Mapping[str, Any], key: str = "") -> float:
        """The item's expiry in epoch seconds."""
        key = key or self.item_key(item)
        kind, raw = self._attribute(item, "expiry", self.expiry, key)
        if self.expiry_unit == "iso":
            if kind != "S" or not isinstance(raw, str):
                raise _wrong_type("expiry", self.expiry, key, kind, "ISO-8601 text (S)", raw,
                                  "or set expiry_unit to \"s\" or \"ms\" if it holds a number")
            parsed = parse_iso(raw)
            if parsed is None:
                raise _wrong_type("expiry", self.expiry, key, kind, "ISO-8601 text such as "
                                  "2025-10-20T07:00:00Z", raw)
            return parsed
        number = _number(raw) if kind in ("N", "S") else None
        if number is None:
            unit = "epoch seconds" if self.expiry_unit == "s" else "epoch milliseconds"
            raise _wrong_type("expiry", self.expiry, key, kind, f"a number of {unit}", raw,
                              "or set expiry_unit to \"iso\" if it holds ISO-8601 text")
        seconds = float(number) / (1000.0 if self.expiry_unit == "ms" else 1.0)
        if not math.isfinite(seconds):
            raise _wrong_type("expiry", self.expiry, key, kind, "a finite number", raw)
        return seconds

    # --- writing an expiry (the expire_leases fault) -------------------------------------

    def encode_expiry(self, seconds: float, like: Mapping[str, Any]) -> dict[str, str]:
        """``seconds`` as an attribute value in the schema's unit, of the same DynamoDB type
        (and, for ISO text, with or without a timezone) as ``like``, the value read."""
        kind = next(iter(like), "N")
        if self.expiry_unit == "iso":
            moment = datetime.fromtimestamp(seconds, UTC)
            raw = str(like.get("S", ""))
            aware = parse_iso_datetime(raw)
            text = moment.isoformat() if aware is None or aware.tzinfo is not None \
                else moment.replace(tzinfo=None).isoformat()
            return {"S": text}
        if self.expiry_unit == "ms":
            number = str(int(seconds * 1000))
        else:
            number = repr(round(seconds, 3))
        return {"S": number} if kind == "S" else {"N": number}


def parse_iso_datetime(text: str) -> datetime | None:
    """ISO-8601 text as a datetime (with its timezone, or naive), or None."""
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def parse_iso(text: str) -> float | None:
    """ISO-8601 text as epoch seconds; a time without a timezone is UTC. None if unreadable."""
    moment = parse_iso_datetime(text)
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _number(raw: object) -> Decimal | None:
    if not isinstance(raw, str | int | float) or isinstance(raw, bool):
        return None
    try:
        number = Decimal(str(raw).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."


def _argument(field_name: str) -> str:
    return f"{field_name} (lease_{field_name})"


def _meaning(field_name: str) -> str:
    return {"owner": "lease's owner", "expiry": "expiry time",
            "version": "lease's version (a number bumped on every renewal), or to \"\" if the table "
                       "has none"}.get(field_name, field_name)


def _wrong_type(field_name: str, attribute: str, key: str, kind: str, wanted: str, raw: object,
                extra: str = "") -> ConfigError:
    fix = f"set {_argument(field_name)} to the attribute holding the {_meaning(field_name)}"
    return ConfigError(field_name, f"item {key} has {attribute!r} = {_short(raw)} of type {kind}, "
                       f"not {wanted}", fix + (f", {extra}" if extra else ""))
