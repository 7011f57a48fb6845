"""at_most / at_least as Chaos Toolkit "probe" tolerances, limits from the configuration.

The real `chaos run` is exercised in tests/integration/test_retry_probes.py; here chaoslib's
own tolerance code is called in-process.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import pytest
from chaoslib.hypothesis import ensure_hypothesis_tolerance_is_valid, within_tolerance

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.tolerances import at_least, at_most, number_in_range, parse_limit, probe_value


@pytest.mark.parametrize("limit, expected", [(2, 2.0), (2.5, 2.5), ("2", 2.0), (" 2.5 \n", 2.5),
                                             ("1e3", 1000.0), ("-1", -1.0), ("inf", math.inf)])
def test_limits_parse_from_numbers_and_strings(limit: Any, expected: float) -> None:
    assert parse_limit(limit) == expected


@pytest.mark.parametrize("limit", ["", "two", "2x", "nan", True, None, [2], {"v": 2}])
def test_garbage_limits_are_config_errors_naming_limit(limit: Any) -> None:
    with pytest.raises(ConfigError, match="^limit: "):
        parse_limit(limit)


def test_number_in_range_reads_numeric_strings_and_names_the_field() -> None:
    assert number_in_range("window", " 300 ", 0.0, 86400.0, open_low=True) == 300.0
    assert number_in_range("below", 1, 0.0, 1.0) == 1.0
    for value, problem in [("x", "is not a number"), (math.nan, "is not a number"), (True, "is not a number"),
                           (0.0, "above 0"), (2.0, "above 0 to 1")]:
        with pytest.raises(ConfigError, match=f"^below: .*{problem}"):
            number_in_range("below", value, 0.0, 1.0, open_low=True)


def test_an_unsubstituted_placeholder_names_the_missing_configuration_key() -> None:
    with pytest.raises(ConfigError, match=r"limit: '\$\{max_amplification\}' was not substituted.*"
                                          r"add \"max_amplification\" to the experiment's configuration"):
        at_most(1.0, "${max_amplification}")


def test_at_most_and_at_least_bounds_are_inclusive() -> None:
    assert at_most(2.0, 2) and not at_most(2.0001, "2") and at_most(-5, 0)
    assert at_least(1.5, "1.5") and not at_least(1.49, 1.5)
    assert not at_most(math.nan, 2) and not at_least(math.nan, 0)
    assert at_most(1e300, "inf")


def test_values_from_dicts_and_strings() -> None:
    shape = {"growth": 2.0, "details": {"jitter": 0.4}, "ok": True}
    assert at_least(shape, 1.5, key="growth") and at_least(shape, 0.3, key="details.jitter")
    assert at_most({"status": 0, "stdout": "2.5\n"}, 3, key="stdout")
    assert probe_value(3) == 3.0
    with pytest.raises(ConfigError, match="^key: 'nope' is not in"):
        at_most(shape, 1, key="nope")
    with pytest.raises(ConfigError, match="^value: "):
        at_most(shape, 1, key="ok")  # a bool is not a number
    with pytest.raises(ConfigError, match="^value: the probe gave no number"):
        at_most(None, 1)


def test_errors_are_logged_because_chaoslib_hides_them(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="chaostoolkit"), pytest.raises(ConfigError):
        at_most(1.0, "lots")
    assert "tolerance at_most: limit: 'lots' is not a number" in caplog.text


TOLERANCE = {"type": "probe", "name": "at-most",
             "provider": {"type": "python", "module": "chaos_dynamo.tolerances", "func": "at_most",
                          "arguments": {"limit": "${max_amplification}"}}}


def test_chaoslib_validates_the_tolerance_without_a_value() -> None:
    ensure_hypothesis_tolerance_is_valid(copy.deepcopy(TOLERANCE))  # value comes at run time


@pytest.mark.parametrize("configured, value, met", [
    (2.0, 1.9, True), (2.0, 2.1, False),          # a number (env_var_type float, or a literal)
    ("2", 1.9, True), ("2", 2.1, False),          # a string: env var without a type
    ("garbage", 1.0, False),                      # an error counts as "not met"
])
def test_chaoslib_substitutes_the_limit_from_configuration(configured: Any, value: float, met: bool) -> None:
    tolerance = copy.deepcopy(TOLERANCE)
    assert within_tolerance(tolerance, value, configuration={"max_amplification": configured}) is met
    assert tolerance["provider"]["arguments"]["value"] == value  # chaoslib writes the output in


def test_without_the_configuration_key_the_tolerance_is_not_met() -> None:
    assert within_tolerance(copy.deepcopy(TOLERANCE), 1.0, configuration={"other": 1}) is False


def test_is_false_judges_a_boolean_key_of_a_dict_output() -> None:
    from chaos_dynamo.tolerances import is_false

    assert is_false({"collapsed": False, "live": 0.2}, key="collapsed") is True
    assert is_false({"collapsed": True}, key="collapsed") is False
    assert is_false(False) is True
    assert is_false(True) is False


@pytest.mark.parametrize("value, key", [({"collapsed": None}, "collapsed"), ({"collapsed": 0}, "collapsed"),
                                        ({"collapsed": "false"}, "collapsed"), ({"other": False}, "collapsed"),
                                        (None, "")])
def test_is_false_refuses_anything_but_a_real_boolean(value: object, key: str) -> None:
    from chaos_dynamo.tolerances import is_false

    with pytest.raises(ConfigError):
        is_false(value, key=key)
