"""The lease schema: validation of the configuration, decoding of scanned items."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lease.ops import LeaseItem
from chaos_dynamo.lease.schema import LeaseSchema, parse_iso

T = 1_763_600_000.5  # 2025-11-20T00:53:20.5Z
ISO_Z = datetime.fromtimestamp(T, UTC).isoformat().replace("+00:00", "Z")


def item(key: str = "host-00001", owner: object = {"S": "svc-a"}, expiry: object = {"N": str(T)},
         version: object = {"N": "3"}) -> dict[str, object]:
    out: dict[str, object] = {"lease_id": {"S": key}}
    for name, value in (("owner", owner), ("expires_at", expiry), ("version", version)):
        if value is not None:
            out[name] = value
    return out


# --- from_arguments ---------------------------------------------------------------------


def test_defaults_match_the_reference_fleets() -> None:
    schema = LeaseSchema.from_arguments("chaos-dynamo-leases")
    assert schema == LeaseSchema("chaos-dynamo-leases", "lease_id", "owner", "expires_at", "s", "version")
    assert schema.attributes == ("lease_id", "owner", "expires_at", "version")


def test_values_are_trimmed_and_the_unit_lowercased() -> None:
    schema = LeaseSchema.from_arguments(" leases ", " id ", "holder", "until", " ISO ", "")
    assert (schema.table, schema.key, schema.expiry_unit, schema.version) == ("leases", "id", "iso", "")
    assert schema.attributes == ("id", "holder", "until")


@pytest.mark.parametrize(("arguments", "field", "words"), [
    ({"table": ""}, "table", "table name"),
    ({"table": "   "}, "table", "table name"),
    ({"table": None}, "table", "table name"),
    ({"table": "a b!"}, "table", "3-255 characters"),
    ({"key": ""}, "key", "attribute name"),
    ({"owner": 5}, "owner", "attribute name"),
    ({"expiry": " "}, "expiry", "attribute name"),
    ({"version": None}, "version", "\"\" if the table has none"),
    ({"expiry_unit": "seconds"}, "expiry_unit", "\"s\" (epoch seconds)"),
    ({"expiry_unit": 1}, "expiry_unit", "\"ms\" (epoch milliseconds)"),
    ({"owner": "lease_id"}, "key", "distinct"),
])
def test_bad_arguments_name_the_field(arguments: dict[str, object], field: str, words: str) -> None:
    values: dict[str, object] = {"table": "leases"} | arguments
    with pytest.raises(ConfigError) as info:
        LeaseSchema.from_arguments(**values)  # type: ignore[arg-type]
    assert info.value.field == field
    assert words in str(info.value)


def test_the_prefix_names_the_configuration_key() -> None:
    with pytest.raises(ConfigError) as info:
        LeaseSchema.from_arguments("leases", expiry_unit="hours", prefix="lease_")
    assert info.value.field == "lease_expiry_unit"


# --- decode -------------------------------------------------------------------------------


@pytest.mark.parametrize(("unit", "value"), [
    ("s", {"N": str(T)}),
    ("s", {"S": str(T)}),
    ("s", {"N": "1763600000.5000"}),
    ("ms", {"N": str(int(T * 1000))}),
    ("ms", {"S": str(int(T * 1000))}),
    ("iso", {"S": ISO_Z}),
    ("iso", {"S": "2025-11-20T00:53:20.500000+00:00"}),
    ("iso", {"S": "2025-11-20T01:53:20.500+01:00"}),
    ("iso", {"S": "2025-11-20T00:53:20.5"}),  # naive: UTC
])
def test_every_unit_decodes_to_epoch_seconds(unit: str, value: dict[str, str]) -> None:
    schema = LeaseSchema.from_arguments("leases", expiry_unit=unit)
    lease = schema.decode(item(expiry=value))
    assert lease == LeaseItem("host-00001", "svc-a", pytest.approx(T), 3)


def test_owner_may_be_a_number_or_null_and_keys_numbers() -> None:
    schema = LeaseSchema.from_arguments("leases")
    decoded = schema.decode({"lease_id": {"N": "42"}, "owner": {"N": "7"}, "expires_at": {"N": str(T)},
                             "version": {"N": "1"}})
    assert (decoded.key, decoded.owner) == ("42", "7")
    assert schema.decode(item(owner={"NULL": True})).owner == ""


def test_a_missing_owner_reads_as_unowned() -> None:
    # A released lease may have its owner attribute removed: not held, not a schema error.
    assert LeaseSchema.from_arguments("leases").decode(item(owner=None)) == LeaseItem("host-00001", "", T, 3)


@pytest.mark.parametrize(("unit", "value", "likely"), [
    ("s", str(int(T * 1000)), 'set expiry_unit (lease_expiry_unit) to "ms"'),   # ms read as s: year 57,000
    ("ms", str(int(T)), 'set expiry_unit (lease_expiry_unit) to "s"'),          # s read as ms: January 1970
    ("s", str(int(T * 1_000_000)), "microseconds or nanoseconds"),
    ("s", "12", "names the attribute holding the expiry time"),
])
def test_an_implausible_expiry_names_the_unit_the_value_and_the_likely_unit(unit: str, value: str,
                                                                           likely: str) -> None:
    schema = LeaseSchema.from_arguments("leases", expiry_unit=unit)
    with pytest.raises(ConfigError) as info:
        schema.decode(item(expiry={"N": value}))
    assert info.value.field == "expiry_unit"
    assert value in str(info.value) and "host-00001" in str(info.value) and likely in str(info.value)
    assert "not a time from 2000 to 2200" in str(info.value)


def test_plausible_bounds_and_a_zero_expiry() -> None:
    schema = LeaseSchema.from_arguments("leases")
    assert schema.decode(item(expiry={"N": "946684800"})).expires_at == 946_684_800.0  # 2000-01-01
    assert schema.decode(item(expiry={"N": "0"})).expires_at == 0.0  # "never held": expired, not an error
    with pytest.raises(ConfigError, match="expiry_unit"):
        schema.decode(item(expiry={"N": "7258118401"}))  # after 2200-01-01


def test_no_version_attribute_reads_version_zero() -> None:
    schema = LeaseSchema.from_arguments("leases", version="")
    assert schema.decode(item(version=None)).version == 0


@pytest.mark.parametrize(("kwargs", "field", "words"), [
    ({"expiry": None}, "expiry",
     "expiry: item host-00001 has no attribute 'expires_at'; set expiry (lease_expiry) to the attribute "
     "holding the expiry time"),
    ({"version": None}, "version", "or to \"\" if the table has none"),
    ({"expiry": {"S": "tomorrow"}}, "expiry", "not a number of epoch seconds"),
    ({"expiry": {"BOOL": True}}, "expiry", "of type BOOL"),
    ({"version": {"N": "2.5"}}, "version", "not a whole number"),
    ({"owner": {"L": []}}, "owner", "not a string"),
])
def test_a_bad_item_names_the_field_attribute_key_and_fix(kwargs: dict[str, object], field: str,
                                                          words: str) -> None:
    with pytest.raises(ConfigError) as info:
        LeaseSchema.from_arguments("leases").decode(item(**kwargs))  # type: ignore[arg-type]
    assert info.value.field == field
    assert words in str(info.value)
    assert "host-00001" in str(info.value)


def test_iso_unit_on_a_number_suggests_the_unit() -> None:
    schema = LeaseSchema.from_arguments("leases", expiry_unit="iso")
    with pytest.raises(ConfigError) as info:
        schema.decode(item())
    assert info.value.field == "expiry" and "expiry_unit" in str(info.value)
    with pytest.raises(ConfigError, match="ISO-8601 text such as"):
        schema.decode(item(expiry={"S": "not a time"}))


def test_an_item_without_the_key_names_key() -> None:
    with pytest.raises(ConfigError) as info:
        LeaseSchema.from_arguments("leases", key="id").decode(item())
    assert info.value.field == "key" and "'id'" in str(info.value)


# --- encode (the expire_leases fault) -------------------------------------------------------


@pytest.mark.parametrize(("unit", "like", "expected"), [
    # an integer stays an integer (rounded down); decimals keep their count
    ("s", {"N": "1763000000"}, {"N": "1763600000"}),
    ("s", {"S": "1763000000"}, {"S": "1763600000"}),
    ("s", {"N": "1763000000.25"}, {"N": "1763600000.50"}),
    ("s", {"N": "1763000000.123456"}, {"N": "1763600000.500000"}),
    ("ms", {"N": "1763000000000"}, {"N": "1763600000500"}),
    ("ms", {"S": "1763000000000.5"}, {"S": "1763600000500.0"}),
    # ISO text keeps its zone style and its count of fractional digits
    ("iso", {"S": "2025-01-01T00:00:00Z"}, {"S": "2025-11-20T00:53:20Z"}),
    ("iso", {"S": "2025-01-01T00:00:00.000Z"}, {"S": "2025-11-20T00:53:20.500Z"}),
    ("iso", {"S": "2025-01-01T00:00:00.000000+00:00"}, {"S": "2025-11-20T00:53:20.500000+00:00"}),
    ("iso", {"S": "2025-01-01T00:00:00.0+01:00"}, {"S": "2025-11-20T01:53:20.5+01:00"}),
    ("iso", {"S": "2025-01-01 00:00:00-0530"}, {"S": "2025-11-19 19:23:20-0530"}),
    ("iso", {"S": "2025-01-01T00:00:00"}, {"S": "2025-11-20T00:53:20"}),
    ("iso", {"S": "2025-01-01T00:00:00.000000"}, {"S": "2025-11-20T00:53:20.500000"}),
])
def test_encode_keeps_the_stored_format(unit: str, like: dict[str, str], expected: dict[str, str]) -> None:
    schema = LeaseSchema.from_arguments("leases", expiry_unit=unit)
    encoded = schema.encode_expiry(T, like)
    assert encoded == expected
    decoded = schema.decode(item(expiry=encoded)).expires_at
    assert T - 1 < decoded <= T  # rounded down, never later than asked


def test_parse_iso() -> None:
    assert parse_iso("1970-01-01T00:00:10") == 10.0
    assert parse_iso("1970-01-01T01:00:10+01:00") == 10.0
    assert parse_iso("soon") is None
