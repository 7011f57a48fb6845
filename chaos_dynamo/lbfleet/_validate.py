"""Checks on what a caller passes to an LB or the fleet; each error names the field."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from urllib.parse import urlsplit

from chaos_dynamo.errors import ConfigError


def _loopback_address(field: str, value: object) -> str:
    """Return ``value`` as a 127.x.x.x address, or raise naming ``field``: the lab never
    binds or sends beyond loopback."""
    try:
        address = ipaddress.IPv4Address(str(value))
    except ValueError:
        raise ConfigError(
            field, f"{value!r} is not an IPv4 address", "use a loopback address such as 127.0.0.11"
        ) from None
    if not address.is_loopback:
        raise ConfigError(
            field,
            f"{value} is not a 127.x.x.x address",
            "the lab only binds and sends on loopback; use 127.0.0.11 and up",
        )
    return str(address)


def _port_number(field: str, value: object) -> int:
    """Return ``value`` as a TCP port (0 = any free port), or raise naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(field, f"{value!r} is not a port number", "use 0..65535 (0 = any free)")
    return value


def _seconds(field: str, value: object, *, positive: bool = False, unit: str = "seconds") -> float:
    """Return ``value`` as a finite number (>= 0, or > 0 when ``positive``), or raise naming
    ``field``: a NaN or negative knob would silently mean "no fault"."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(field, f"{value!r} is not a finite number", f"pass {unit} as a number")
    if value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(field, f"{value!r} is out of range", f"pass {unit} {bound}")
    return float(value)


def _upstream_url(value: str) -> tuple[str, int]:
    """Return (host, port) of an ``http://127.x.x.x:PORT`` emulator URL."""
    parts = urlsplit(value)
    if parts.scheme != "http" or parts.hostname is None:
        raise ConfigError(
            "upstream", f"{value!r} is not an http:// URL", "pass e.g. http://127.0.0.1:5000"
        )
    host = _loopback_address("upstream", parts.hostname)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not port:
        raise ConfigError("upstream", f"{value!r} has no port", "pass e.g. http://127.0.0.1:5000")
    return host, port


def _check_specs(specs: Sequence[tuple[str, str]]) -> None:
    """Names unique and not ``total``; addresses unique loopback (each LB needs its own)."""
    if not specs:
        raise ConfigError("specs", "the fleet has no LBs", "pass [(name, address), ...]")
    names: set[str] = set()
    addresses: set[str] = set()
    for index, (name, address) in enumerate(specs):
        if name in names or name == "total":
            raise ConfigError(f"specs[{index}].name", f"{name!r} is repeated or reserved")
        normalized = _loopback_address(f"specs[{index}].address", address)
        if normalized in addresses:
            raise ConfigError(
                f"specs[{index}].address", f"{address} is used twice", "give each LB its own"
            )
        names.add(name)
        addresses.add(normalized)
