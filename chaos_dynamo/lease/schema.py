"""The user's lease table, described by configuration: which attribute means what.

A lease table has one item per lease. Only four things are read from an item, each from
an attribute the schema names:

- ``key``: the lease's identity (the table's hash key; a string, number or binary);
- ``owner``: who holds it (a string; a number is read as its decimal text; NULL, or no
  owner attribute at all, reads as ``""``: not held, e.g. released);
- ``expiry``: until when, in ``expiry_unit``: ``s`` (epoch seconds, a number, possibly
  fractional), ``ms`` (epoch milliseconds) or ``iso`` (an ISO-8601 string such as
  ``2025-10-20T07:00:00Z``; a time without a timezone is taken as UTC). Numbers may be
  stored as DynamoDB numbers (N) or as strings holding a number (S). A number that reads
  as a time before 2000 or after 2200 (other than 0, a common "never held" value) is
  taken as a wrong ``expiry_unit``: milliseconds read as seconds land around the year
  57,000, seconds read as milliseconds in January 1970;
- ``version``: a number that grows by one per successful renewal or acquisition (a
  fencing token); ``""`` when the table has none (then goodput cannot be measured).

Items are DynamoDB's low-level form (``{"owner": {"S": "a"}, ...}``), as a Scan returns them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lease.ops import LeaseItem

EXPIRY_UNITS = ("s", "ms", "iso")
EARLIEST = 946_684_800.0
"""2000-01-01T00:00:00Z: a numeric expiry before it means a wrong ``expiry_unit``."""
LATEST = 7_258_118_400.0
"""2200-01-01T00:00:00Z: a numeric expiry after it means a wrong ``expiry_unit``."""
_YEAR = 31_556_952.0  # seconds in a mean Gregorian year
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
        if self.owner not in item:
            return ""  # not held: a released lease may have its owner attribute removed
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
        if seconds != 0 and not EARLIEST <= seconds <= LATEST:
            raise self._implausible(key, float(number), raw)
        return seconds

    def _implausible(self, key: str, number: float, raw: object) -> ConfigError:
        """A numeric expiry far outside 2000..2200: almost surely the wrong unit."""
        unit = "epoch seconds" if self.expiry_unit == "s" else "epoch milliseconds"
        seconds = number / (1000.0 if self.expiry_unit == "ms" else 1.0)
        problem = (f"item {key} has {self.expiry!r} = {_short(raw)}, which read as {unit} (expiry_unit "
                   f"{self.expiry_unit!r}) is {_when(seconds)}, not a time from 2000 to 2200")
        guesses = {"s": number, "ms": number / 1000.0}
        right = [u for u, s in guesses.items() if u != self.expiry_unit and EARLIEST <= s <= LATEST]
        if right:
            other = "epoch seconds" if right[0] == "s" else "epoch milliseconds"
            fix = (f"set expiry_unit (lease_expiry_unit) to \"{right[0]}\": read as {other} it is "
                   f"{_when(guesses[right[0]])}")
        elif EARLIEST <= number / 1e6 <= LATEST or EARLIEST <= number / 1e9 <= LATEST:
            fix = ("it looks like epoch microseconds or nanoseconds, which expiry_unit cannot read: store "
                   "the expiry in epoch seconds or milliseconds")
        else:
            fix = ("check that expiry (lease_expiry) names the attribute holding the expiry time and that "
                   "expiry_unit (lease_expiry_unit) is its unit")
        return ConfigError("expiry_unit", problem, fix)

    # --- writing an expiry (the expire_leases fault) -------------------------------------

    def encode_expiry(self, seconds: float, like: Mapping[str, Any]) -> dict[str, str]:
        """``seconds`` as an attribute value in the schema's unit, in the format of ``like``
        (the value read): the same DynamoDB type; a number keeps its count of decimals (an
        integer stays an integer), rounded down; ISO text keeps its date-time separator,
        its count of fractional digits (truncated) and its zone style (``Z``, an offset
        such as ``+02:00`` or ``+0200``, or none)."""
        kind = next(iter(like), "N")
        raw = str(next(iter(like.values()), ""))
        if self.expiry_unit == "iso":
            return {"S": format_iso_like(seconds, raw)}
        value = seconds * (1000.0 if self.expiry_unit == "ms" else 1.0)
        number = _format_number_like(value, raw)
        return {"S": number} if kind == "S" else {"N": number}


_ISO_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}(?P<sep>[Tt ])\d{2}:\d{2}:\d{2}(?:[.,](?P<frac>\d+))?"
                        r"(?P<zone>[Zz]|[+-]\d{2}(?P<colon>:?)(?P<minutes>\d{2})?)?$")
_DECIMALS = re.compile(r"^\s*[+-]?\d+(?:\.(?P<frac>\d*))?\s*$")


def _format_number_like(value: float, raw: str) -> str:
    """``value`` with as many decimals as ``raw`` (0 for an integer), rounded down; a
    number written otherwise (an exponent) with up to three decimals."""
    shape = _DECIMALS.match(raw)
    if shape is None:
        return repr(round(value, 3))
    digits = min(len(shape.group("frac") or ""), 9)
    exact = Decimal(repr(value)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_FLOOR)
    return f"{exact:f}"


def format_iso_like(seconds: float, raw: str) -> str:
    """``seconds`` as ISO-8601 text shaped like ``raw`` (see :meth:`LeaseSchema.encode_expiry`);
    text of another shape gives Python's ``isoformat`` (with the offset ``raw`` has, if any)."""
    shape = _ISO_SHAPE.match(raw.strip())
    parsed = parse_iso_datetime(raw)
    zone = parsed.tzinfo if parsed is not None and parsed.tzinfo is not None else None
    moment = datetime.fromtimestamp(seconds, zone or UTC)
    if shape is None:
        if zone is None and parsed is not None:
            return moment.replace(tzinfo=None).isoformat()
        text = moment.isoformat()
        return text[:-6] + "Z" if raw.strip()[-1:] in ("Z", "z") and text.endswith("+00:00") else text
    text = moment.strftime("%Y-%m-%d") + shape.group("sep") + moment.strftime("%H:%M:%S")
    digits = len(shape.group("frac") or "")
    if digits:
        text += raw.strip()[len(text)] + f"{moment.microsecond:06d}".ljust(digits, "0")[:digits]
    suffix = shape.group("zone") or ""
    if suffix and suffix not in "Zz":
        offset = int((moment.utcoffset() or timedelta()).total_seconds() // 60)
        sign, offset = ("-" if offset < 0 else "+"), abs(offset)
        suffix = f"{sign}{offset // 60:02d}"
        if shape.group("minutes") is not None:
            suffix += f"{shape.group('colon')}{offset % 60:02d}"
    return text + suffix


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


def _when(seconds: float) -> str:
    """An epoch time as UTC text, or its approximate year when datetime cannot show it."""
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return f"around the year {1970 + seconds / _YEAR:,.0f}"


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
