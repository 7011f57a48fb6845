"""Chaos Toolkit tolerances with limits from the experiment's configuration.

A hypothesis probe's tolerance can itself be a probe: chaoslib calls it with the probe's
output as the argument ``value`` and takes a true result as "within tolerance"::

    "tolerance": {
      "type": "probe", "name": "amplification-at-most",
      "provider": {"type": "python", "module": "chaos_dynamo.tolerances", "func": "at_most",
                   "arguments": {"limit": "${max_amplification}"}}
    }

chaoslib (1.44) substitutes ``${key}`` in the tolerance provider's ``arguments`` from the
configuration when it runs the tolerance, as it does for any python provider: a whole-string
``"${key}"`` becomes the configuration's value with its type (a number stays a number), so a
limit read from the environment (``{"type": "env", "key": "MAX_AMPLIFICATION"}``) arrives as
a string unless the configuration entry sets ``"env_var_type": "float"``. Both work here.

Two chaoslib habits to know:

- ``arguments`` must be present in the tolerance's provider: chaoslib writes ``value`` into
  it (a missing ``arguments`` is a KeyError in chaoslib). ``value`` has a default here
  because chaoslib validates the provider's arguments against the signature before any
  probe has run.
- An error in a tolerance probe (a garbage limit) makes the tolerance "not met", and chaoslib
  logs why only at debug level; so these functions log the error themselves before raising.
"""

import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from chaos_dynamo.errors import ConfigError

__all__ = ["at_most", "at_least", "is_false"]

logger = logging.getLogger("chaostoolkit")

_PLACEHOLDER = re.compile(r"^\$\{([^}]*)\}$")


def parse_limit(limit: object, field_name: str = "limit") -> float:
    """A limit as a number: an int or float, or a string holding one ("2", " 2.5 ", "1e3",
    "inf"). ConfigError naming ``field_name`` for anything else (NaN, booleans, text)."""
    if isinstance(limit, bool) or limit is None:
        raise ConfigError(field_name, f"{limit!r} is not a number",
                          "give a number, or \"${key}\" naming a number in the configuration")
    if isinstance(limit, (int, float)):
        number = float(limit)
    elif isinstance(limit, str):
        placeholder = _PLACEHOLDER.match(limit.strip())
        if placeholder:
            raise ConfigError(field_name, f"{limit!r} was not substituted: the experiment's configuration "
                              f"has no key {placeholder.group(1)!r}",
                              f"add \"{placeholder.group(1)}\" to the experiment's configuration")
        try:
            number = float(limit.strip())
        except ValueError:
            raise ConfigError(field_name, f"{limit!r} is not a number",
                              "give a number such as 2 or \"2.5\" (check the environment variable "
                              "the configuration reads)") from None
    else:
        raise ConfigError(field_name, f"{limit!r} is not a number", "give a number such as 2 or \"2.5\"")
    if math.isnan(number):
        raise ConfigError(field_name, f"{limit!r} is not a number", "give a number such as 2 or \"2.5\"")
    return number


def number_in_range(field_name: str, value: object, low: float, high: float, *,
                    open_low: bool = False) -> float:
    """A probe's argument as a number in ``low..high`` (above ``low`` when ``open_low``): an
    int or float, or a string holding one (from an env-typed configuration). ConfigError
    naming ``field_name`` for anything else (NaN, infinities, booleans, text, out of range)."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(field_name, f"{value!r} is not a number", f"use a number from {low:g} to {high:g}")
    if value > high or value < low or (open_low and value == low):
        bound = f"above {low:g}" if open_low else f"from {low:g}"
        raise ConfigError(field_name, f"{value!r} is out of range", f"use a number {bound} to {high:g}")
    return float(value)


def _pick(value: object, key: str) -> Any:
    """``value`` itself, or ``value[key]`` for a dict output (``key`` may be dotted)."""
    picked: Any = value
    for part in [p for p in key.split(".") if p]:
        if not isinstance(picked, Mapping) or part not in picked:
            raise ConfigError("key", f"{key!r} is not in the probe's output {value!r}",
                              "name a key of the probe's output, or leave key empty")
        picked = picked[part]
    return picked


def probe_value(value: object, key: str = "") -> float:
    """The number a tolerance judges: ``value`` itself, or ``value[key]`` for a dict output
    (``key`` may be dotted: ``details.growth``); a numeric string is parsed."""
    picked = _pick(value, key)
    if picked is None:
        raise ConfigError("value", "the probe gave no number (None)",
                          "use this function as a tolerance of type \"probe\": chaoslib passes the "
                          "probe's output as value")
    if isinstance(picked, bool) or not isinstance(picked, (int, float, str)):
        raise ConfigError("value", f"the probe's output {picked!r} is not a number",
                          "use at_most/at_least on a probe that returns a number (or give key)")
    return parse_limit(picked, "value") if isinstance(picked, str) else float(picked)


def _judge(op: str, value: object, limit: object, key: str) -> bool:
    try:
        number, bound = probe_value(value, key), parse_limit(limit)
    except ConfigError as exc:
        logger.error("tolerance %s: %s", op, exc)
        raise
    ok = number <= bound if op == "at_most" else number >= bound
    logger.info("tolerance %s: %g %s %g: %s", op, number, "<=" if op == "at_most" else ">=", bound,
                "met" if ok else "NOT met")
    return ok


def at_most(value: float | None = None, limit: float | str | None = None, key: str = "") -> bool:
    """True when the probe's output ``value`` is at most ``limit`` (NaN is never within).

    Args:
        value: the probe's output; chaoslib passes it.
        limit: a number, or a string holding one (from an env-typed configuration).
        key: for a probe that returns a dict, the (dotted) key of the number to judge.

    Raises:
        ConfigError: ``limit`` or ``value`` is not a number (logged, then the tolerance
            counts as not met).
    """
    return _judge("at_most", value, limit, key)


def at_least(value: float | None = None, limit: float | str | None = None, key: str = "") -> bool:
    """True when the probe's output ``value`` is at least ``limit`` (NaN is never within).

    Arguments as :func:`at_most`.
    """
    return _judge("at_least", value, limit, key)


def is_false(value: Any = None, key: str = "") -> bool:
    """True when the probe's output (or ``value[key]`` for a dict output, dotted keys allowed)
    is the boolean ``false``: e.g. ``{"key": "collapsed"}`` on a collapse verdict.

    Anything but a real boolean (a missing key, None, 0, "false") is a ConfigError, logged,
    so the tolerance counts as not met rather than passing on a typo.
    """
    try:
        picked = _pick(value, key)
        if not isinstance(picked, bool):
            raise ConfigError("value", f"{picked!r} is not a boolean",
                              "use is_false on a probe (or a key of its output) that gives true or false")
    except ConfigError as error:
        logger.error("tolerance is_false: %s", error)
        raise
    logger.info("tolerance is_false: %s is %s: %s", key or "value", picked,
                "met" if picked is False else "NOT met")
    return picked is False
