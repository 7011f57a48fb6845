"""Checks on what a caller passes to an LB or the fleet; each error names the field."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.lbfleet._state import INTERMITTENT_MODES, Intermittent

MAX_WINDOW_SECONDS = 86_400.0
"""The longest timed fault window (a day); a longer wait cannot even be timed on every platform."""


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


def check_rate(field: str, value: object) -> float:
    """``value`` as the fraction (0..1) of new connections the intermittent knob fails;
    ConfigError naming ``field`` otherwise (the LB knob and the failover actions share it)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError(field, f"{value!r} is not a fraction",
                          "use 0.0 to 1.0 (1.0 fails every new connection)")
    return float(value)


def check_mode(field: str, value: object) -> str:
    """``value`` as an intermittent mode (``refuse`` or ``blackhole``); ConfigError naming
    ``field`` otherwise."""
    if not isinstance(value, str) or value not in INTERMITTENT_MODES:
        raise ConfigError(field, f"{value!r} is not a failure mode",
                          f"use one of {list(INTERMITTENT_MODES)}: refuse resets each picked "
                          "connection, blackhole holds it unanswered")
    return value


def check_seed(field: str, value: object) -> int:
    """``value`` as an integer seed (not a bool); ConfigError naming ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, f"{value!r} is not an integer", "use e.g. 0 or 42")
    return value


def _intermittent(
    rate: object, mode: object, seconds: object, seed: object, prefix: str = ""
) -> Intermittent:
    """Check the ``intermittent`` knob's fields, each error naming ``prefix + field``."""
    checked_rate = check_rate(f"{prefix}rate", rate)
    checked_mode = check_mode(f"{prefix}mode", mode)
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, int | float)
        or not math.isfinite(seconds) or not 0 < seconds <= MAX_WINDOW_SECONDS
    ):
        raise ConfigError(f"{prefix}seconds", f"{seconds!r} is not a window length",
                          f"use seconds above 0, at most {MAX_WINDOW_SECONDS:g}, "
                          "or null (until cleared)")
    checked_seed = check_seed(f"{prefix}seed", seed)
    return Intermittent(checked_rate, checked_mode,
                        None if seconds is None else float(seconds), checked_seed)


def intermittent_from_json(
    value: object, default_seed: int, field: str = "faults.intermittent"
) -> Intermittent | None:
    """The ``intermittent`` knob of a faults request: an object
    ``{"rate", "mode", "seconds", "seed"}`` (only ``rate`` required; ``seed`` defaults to
    ``default_seed``), or null to clear it. Errors name ``field.<key>``."""
    if value is None:
        return None
    example = '{"rate": 0.5, "mode": "refuse", "seconds": 10, "seed": 1}'
    if not isinstance(value, dict):
        raise ConfigError(field, f"{value!r} is not an object",
                          f"send e.g. {example}, or null to clear it")
    body: dict[str, Any] = value
    known = ("rate", "mode", "seconds", "seed")
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise ConfigError(f"{field}.{unknown[0]}", "is not a field of the intermittent knob",
                          f"use {list(known)}")
    if "rate" not in body:
        raise ConfigError(f"{field}.rate", "is missing", f"send e.g. {example}")
    return _intermittent(body["rate"], body.get("mode", "refuse"), body.get("seconds"),
                         body.get("seed", default_seed), prefix=f"{field}.")
