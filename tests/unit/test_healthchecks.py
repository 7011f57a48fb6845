"""Route 53 health checks: the rules CreateHealthCheck applies and the evaluation of
checker results into each health check's status, as AWS documents them."""

from __future__ import annotations

import dataclasses
from typing import Any

import botocore.session
import pytest

from chaos_dynamo.errors import AwsError
from chaos_dynamo.route53.healthchecks import (
    AWS_TYPES,
    CHECKER_REGIONS,
    SUPPORTED_TYPES,
    CheckResult,
    HealthCheckConfig,
    HealthEvaluator,
    check_config,
    config_from_api,
    not_evaluated_reason,
)
from chaos_dynamo.route53.rules import constraint_error, range_error

OK = CheckResult(True, "Success: HTTP Status Code 200, OK", 1.0)
FAIL = CheckResult(False, "Failure: HTTP Status Code 503, Service Unavailable", 2.0)
THREE = CHECKER_REGIONS[:3]


def http(check_id: str = "hc-1", **changes: Any) -> HealthCheckConfig:
    base = HealthCheckConfig(id=check_id, type="HTTP", ip_address="127.0.0.11", port=8080,
                             resource_path="/_lb/health", request_interval=10,
                             failure_threshold=1, regions=THREE)
    return dataclasses.replace(base, **changes)


def calculated(check_id: str, children: tuple[str, ...], threshold: int | None,
               **changes: Any) -> HealthCheckConfig:
    return HealthCheckConfig(id=check_id, type="CALCULATED", children=children,
                             health_threshold=threshold, **changes)


def refused(config: HealthCheckConfig, known: tuple[str, ...] = ()) -> str:
    with pytest.raises(AwsError) as caught:
        check_config(config, known)
    assert caught.value.code == "InvalidInput"
    return caught.value.aws_message


# --- config_from_api -------------------------------------------------------------------


def test_from_api_fills_route53_defaults() -> None:
    config = config_from_api("hc-1", {"Type": "HTTP", "IPAddress": "127.0.0.1"}, "ref-1")
    assert config == HealthCheckConfig(id="hc-1", type="HTTP", ip_address="127.0.0.1",
                                       caller_reference="ref-1")
    assert (config.request_interval, config.failure_threshold, config.resource_path) == (30, 3, "/")
    assert config.regions == CHECKER_REGIONS and len(CHECKER_REGIONS) == 8
    assert config.effective_port == 80
    assert dataclasses.replace(config, port=8080).effective_port == 8080


def test_from_api_reads_every_field_including_xml_text() -> None:
    config = config_from_api("hc-2", {
        "Type": "HTTP_STR_MATCH", "IPAddress": "::1", "Port": "8081", "ResourcePath": "/up",
        "FullyQualifiedDomainName": "app.example.com", "SearchString": "ok",
        "RequestInterval": "10", "FailureThreshold": 2, "Inverted": "true", "Disabled": False,
        "Regions": ["us-east-1", "us-west-1", "us-west-2"], "MeasureLatency": True,
    })
    assert (config.port, config.request_interval, config.failure_threshold) == (8081, 10, 2)
    assert (config.inverted, config.disabled, config.regions) == (True, False, THREE)
    assert (config.fqdn, config.search_string, config.resource_path) == ("app.example.com", "ok", "/up")
    calc = config_from_api("c", {"Type": "CALCULATED", "HealthThreshold": 0,
                                 "ChildHealthChecks": ["a", "b"]})
    assert (calc.health_threshold, calc.children, calc.effective_port) == (0, ("a", "b"), 0)


@pytest.mark.parametrize(("field", "value"), [
    ("Port", "eighty"), ("RequestInterval", True), ("Inverted", "yes"),
    ("Regions", "us-east-1"), ("ChildHealthChecks", [1, 2]), ("IPAddress", 127),
])
def test_from_api_refuses_wrong_types_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(AwsError) as caught:
        config_from_api("hc", {"Type": "HTTP", "IPAddress": "127.0.0.1", field: value})
    assert caught.value.code == "InvalidInput" and field in caught.value.aws_message


def test_from_api_needs_a_type() -> None:
    with pytest.raises(AwsError, match="Type is required; use one of"):
        config_from_api("hc", {"IPAddress": "127.0.0.1"})


# --- check_config ----------------------------------------------------------------------


def test_lab_constants_match_botocores_route53_model() -> None:
    """The lab's enums are AWS's (the model botocore ships), not a guess."""
    model = botocore.session.get_session().get_service_model("route53")
    shape: Any = model.shape_for("HealthCheckConfig")
    assert tuple(shape.members["Type"].enum) == AWS_TYPES
    assert tuple(shape.members["Regions"].member.enum) == CHECKER_REGIONS
    assert set(SUPPORTED_TYPES) <= set(AWS_TYPES)


def test_valid_configs_pass() -> None:
    check_config(http(), ())
    check_config(http(ip_address=None, fqdn="app.example.com"), ())
    check_config(http(type="TCP", resource_path="/"), ())
    check_config(http(type="HTTP_STR_MATCH", search_string="x" * 255), ())
    check_config(http(ip_address="::1", request_interval=30, failure_threshold=10,
                      regions=CHECKER_REGIONS), ())
    check_config(calculated("c", ("a", "b"), 0), ("a", "b", "c"))
    check_config(calculated("c", ("a",), 256), ("a",))


@pytest.mark.parametrize(("changes", "path", "constraint"), [
    ({"failure_threshold": 0}, "failureThreshold", "greater than or equal to 1"),
    ({"failure_threshold": 11}, "failureThreshold", "less than or equal to 10"),
    ({"request_interval": 5}, "requestInterval", "greater than or equal to 10"),
    ({"request_interval": 60}, "requestInterval", "less than or equal to 30"),
    ({"port": 0}, "port", "greater than or equal to 1"),
    ({"port": 65536}, "port", "less than or equal to 65535"),
    ({"type": "HTTP_STR_MATCH", "search_string": "x" * 256}, "searchString",
     "have length less than or equal to 255"),
    ({"resource_path": "/" + "p" * 255}, "resourcePath", "have length less than or equal to 255"),
    ({"regions": ("us-east-1", "us-west-1")}, "regions", "have length greater than or equal to 3"),
    ({"regions": ("us-east-1", "us-west-1", "eu-central-1")}, "regions.3.member",
     "satisfy enum value set: [us-east-1, us-west-1"),
    ({"type": "FTP"}, "type", "satisfy enum value set: [HTTP, HTTP_STR_MATCH, TCP, CALCULATED]"),
])
def test_field_constraints_are_worded_as_aws_validation_errors(
    changes: dict[str, Any], path: str, constraint: str,
) -> None:
    message = refused(http(**changes))
    assert message.startswith("1 validation error detected: Value '")
    assert f"at 'healthCheckConfig.{path}' failed to satisfy constraint: Member must " in message
    assert constraint in message


def test_field_errors_are_worded_by_the_change_batch_rules_helpers() -> None:
    """One wording for every Route 53 validation error: the rules module's helpers."""
    assert refused(http(port=0)) == "1 validation error detected: " + range_error(
        0, "healthCheckConfig.port", 1, 65535)[0]
    assert refused(http(type="FTP")) == "1 validation error detected: " + constraint_error(
        "FTP", "healthCheckConfig.type", f"satisfy enum value set: [{', '.join(SUPPORTED_TYPES)}]")


def test_every_field_error_is_reported_at_once() -> None:
    message = refused(http(failure_threshold=0, port=70000))
    assert message.startswith("2 validation errors detected: ")
    assert "failureThreshold" in message and "port" in message


def test_calculated_constraints() -> None:
    assert "healthCheckConfig.healthThreshold" in refused(calculated("c", ("a",), 257), ("a",))
    many = tuple(f"h{i}" for i in range(257))
    assert "healthCheckConfig.childHealthChecks" in refused(calculated("c", many, 1), many)


@pytest.mark.parametrize("kind", ["HTTPS", "HTTPS_STR_MATCH", "CLOUDWATCH_METRIC", "RECOVERY_CONTROL"])
def test_unsupported_aws_types_say_the_lab_does_not_and_what_to_use(kind: str) -> None:
    message = refused(http(type=kind, search_string="x"))
    assert f"the lab does not support health checks of type {kind}; use " in message


def test_request_interval_is_10_or_30() -> None:
    message = refused(http(request_interval=20))
    assert "RequestInterval must be 10 or 30, not 20; use 10" in message


@pytest.mark.parametrize("address", ["10.0.0.5", "192.0.2.1", "2001:db8::1", "0.0.0.0"])
def test_non_loopback_ip_address_is_refused(address: str) -> None:
    message = refused(http(ip_address=address))
    assert message.startswith("Invalid parameter: IPAddress")
    assert "the lab checks loopback addresses only" in message and "127." in message


def test_unparseable_ip_address_is_refused() -> None:
    assert "IPAddress 'localhost' is not an IPv4 or IPv6 address; use" in refused(
        http(ip_address="localhost"))


def test_endpoint_needs_ip_address_or_fqdn() -> None:
    message = refused(http(ip_address=None))
    assert "needs IPAddress or FullyQualifiedDomainName; set IPAddress" in message


def test_tcp_needs_a_port_and_str_match_a_search_string() -> None:
    assert "Port is required for TCP health checks; set Port" in refused(
        http(type="TCP", port=None))
    assert "SearchString is required for HTTP_STR_MATCH" in refused(
        http(type="HTTP_STR_MATCH", search_string=None))
    assert "SearchString is required" in refused(http(type="HTTP_STR_MATCH", search_string=""))


def test_children_only_on_calculated() -> None:
    message = refused(http(children=("a",)), ("a",))
    assert "ChildHealthChecks and HealthThreshold are for CALCULATED" in message


@pytest.mark.parametrize(("changes", "field"), [
    ({"ip_address": "127.0.0.1"}, "IPAddress"),
    ({"port": 80}, "Port"),
    ({"fqdn": "app.example.com"}, "FullyQualifiedDomainName"),
])
def test_calculated_takes_no_target(changes: dict[str, Any], field: str) -> None:
    message = refused(calculated("c", ("a",), 1, **changes), ("a",))
    assert f"{field} is not allowed for CALCULATED health checks; leave it out" in message


def test_calculated_children_must_exist_once_and_not_be_itself() -> None:
    assert "names ghost, but no health check exists with that ID; create it first" in refused(
        calculated("c", ("a", "ghost"), 1), ("a", "c"))
    assert "names the check itself" in refused(calculated("c", ("c",), 1), ("c",))
    assert "names a twice" in refused(calculated("c", ("a", "a"), 1), ("a",))
    assert "HealthThreshold is required for CALCULATED" in refused(
        calculated("c", ("a",), None), ("a",))


def test_duplicate_regions_are_refused() -> None:
    message = refused(http(regions=("us-east-1", "us-east-1", "us-west-2")))
    assert "Regions lists a region twice" in message


# --- the evaluator ---------------------------------------------------------------------


def report(ev: HealthEvaluator, check_id: str, regions: tuple[str, ...], ok: bool) -> bool:
    changed = False
    for region in regions:
        changed = ev.record(check_id, region, OK if ok else FAIL) or changed
    return changed


def test_a_new_check_is_healthy_and_unknown_ids_are_none() -> None:
    ev = HealthEvaluator([http()])
    assert ev.status("hc-1") is True and ev.statuses() == {"hc-1": True}
    assert ev.status("nope") is None
    assert ev.observations("hc-1") == [] and ev.observations("nope") == []


def test_failure_threshold_counts_consecutive_results_per_checker() -> None:
    ev = HealthEvaluator([http(failure_threshold=3, regions=CHECKER_REGIONS)])
    for region in CHECKER_REGIONS:
        ev.record("hc-1", region, FAIL)
        ev.record("hc-1", region, FAIL)
        ev.record("hc-1", region, OK)  # breaks the streak
        ev.record("hc-1", region, FAIL)
        ev.record("hc-1", region, FAIL)
    assert ev.status("hc-1") is True
    assert report(ev, "hc-1", CHECKER_REGIONS, False) is True  # third in a row everywhere
    assert ev.status("hc-1") is False
    # Back to healthy also takes three successes in a row (per checker).
    for _ in range(2):
        assert report(ev, "hc-1", CHECKER_REGIONS, True) is False
    assert report(ev, "hc-1", CHECKER_REGIONS, True) is True
    assert ev.status("hc-1") is True


def test_three_regions_need_one_healthy_checker() -> None:
    """1 of 3 healthy is 33% > 18%: healthy; 0 of 3: unhealthy."""
    ev = HealthEvaluator([http(regions=THREE)])
    assert ev.record("hc-1", THREE[0], FAIL) is False
    assert ev.record("hc-1", THREE[1], FAIL) is False
    assert ev.status("hc-1") is True
    assert ev.record("hc-1", THREE[2], FAIL) is True
    assert ev.status("hc-1") is False
    assert ev.record("hc-1", THREE[1], OK) is True
    assert ev.status("hc-1") is True


def test_eight_regions_need_two_healthy_checkers() -> None:
    """1 of 8 is 12.5%, not more than 18%: unhealthy; 2 of 8 is 25%: healthy."""
    ev = HealthEvaluator([http(regions=CHECKER_REGIONS)])
    report(ev, "hc-1", CHECKER_REGIONS[:6], False)
    assert ev.status("hc-1") is True  # two regions have not reported: they count healthy
    assert ev.record("hc-1", CHECKER_REGIONS[6], FAIL) is True
    assert ev.status("hc-1") is False  # one healthy of eight
    assert ev.record("hc-1", CHECKER_REGIONS[0], OK) is True
    assert ev.status("hc-1") is True  # two of eight


def test_inverted_flips_and_disabled_is_healthy_unless_also_inverted() -> None:
    """AWS: a disabled check is healthy; to stop routing to its resource, invert it."""
    ev = HealthEvaluator([http("inv", inverted=True), http("off", disabled=True),
                          http("both", inverted=True, disabled=True),
                          calculated("calc", ("off",), 1, inverted=True, disabled=True)])
    assert ev.statuses() == {"inv": False, "off": True, "both": False, "calc": False}
    for check in ("inv", "off", "both"):
        report(ev, check, THREE, False)
    assert ev.statuses() == {"inv": True, "off": True, "both": False, "calc": False}


def test_a_disabled_check_keeps_its_observations_and_starts_afresh_when_enabled() -> None:
    ev = HealthEvaluator([http(), calculated("c", ("hc-1",), 1)])
    report(ev, "hc-1", THREE, False)
    assert (ev.status("hc-1"), ev.status("c")) == (False, False)
    failed = ev.observations("hc-1")
    ev.configure([http(disabled=True), calculated("c", ("hc-1",), 1)])
    assert (ev.status("hc-1"), ev.status("c")) == (True, True)
    assert ev.observations("hc-1") == failed  # GetHealthCheckStatus still reports them
    assert ev.record("hc-1", THREE[0], FAIL) is False  # a disabled check has no checkers
    ev.configure([http(), calculated("c", ("hc-1",), 1)])
    # Enabled again: healthy like a new check, not what its checkers said before.
    assert (ev.status("hc-1"), ev.status("c")) == (True, True)
    assert ev.observations("hc-1") == [] and ev.last_failures("hc-1") == []
    assert ev.record("hc-1", THREE[0], FAIL) is False  # one failing checker of three: healthy


@pytest.mark.parametrize(("config", "reason"), [
    (http(type="HTTPS"), "the lab does not evaluate health checks of type HTTPS"),
    (HealthCheckConfig(id="hc-1", type="CLOUDWATCH_METRIC"),
     "the lab does not evaluate health checks of type CLOUDWATCH_METRIC"),
    (http(ip_address="192.0.2.10"), "IPAddress 192.0.2.10 is not a loopback address"),
    (http(ip_address="localhost"), "IPAddress 'localhost' is not an IP address"),
    (http(ip_address=None), "neither IPAddress nor FullyQualifiedDomainName"),
    (http(type="TCP", port=None), "TCP health check without Port"),
    (http(type="HTTP_STR_MATCH"), "without SearchString"),
])
def test_checks_the_lab_cannot_evaluate_say_why(config: HealthCheckConfig, reason: str) -> None:
    found = not_evaluated_reason(config)
    assert found is not None and reason in found and found.endswith("it counts as healthy")
    # Not evaluated: healthy, inverted or not, whatever a checker reports.
    ev = HealthEvaluator([config, dataclasses.replace(config, id="inv", inverted=True)])
    report(ev, "hc-1", THREE, False)
    assert ev.statuses() == {"hc-1": True, "inv": True}
    assert ev.observations("hc-1") == []


def test_checks_the_lab_can_evaluate_have_no_reason() -> None:
    for config in (http(), http(ip_address=None, fqdn="app.example.com"), http(ip_address="::1"),
                   http(type="TCP"), http(type="HTTP_STR_MATCH", search_string="ok"),
                   calculated("c", ("a",), 1),
                   http(type="HTTPS", disabled=True)):  # disabled: its status needs no checker
        assert not_evaluated_reason(config) is None, config
    ev = HealthEvaluator([http(type="HTTPS", disabled=True, inverted=True)])
    assert ev.status("hc-1") is False


def test_results_for_unknown_checks_regions_or_calculated_are_ignored() -> None:
    ev = HealthEvaluator([http(), calculated("c", ("hc-1",), 1)])
    assert ev.record("ghost", "us-east-1", FAIL) is False
    assert ev.record("hc-1", "sa-east-1", FAIL) is False  # not one of its regions
    assert ev.record("c", "us-east-1", FAIL) is False
    assert ev.observations("hc-1") == [] and ev.observations("c") == []


def test_observations_and_last_failures_per_region_in_region_order() -> None:
    ev = HealthEvaluator([http(failure_threshold=2)])
    late_ok = CheckResult(True, "Success: HTTP Status Code 200, OK", 3.0)
    ev.record("hc-1", THREE[1], FAIL)
    ev.record("hc-1", THREE[0], OK)
    ev.record("hc-1", THREE[1], late_ok)
    assert ev.observations("hc-1") == [(THREE[0], OK), (THREE[1], late_ok)]
    assert ev.last_failures("hc-1") == [(THREE[1], FAIL)]


def test_calculated_counts_healthy_children_against_the_threshold() -> None:
    children = ("a", "b", "c")
    ev = HealthEvaluator([*(http(c) for c in children), calculated("two", children, 2),
                          calculated("zero", children, 0), calculated("inv", children, 3, inverted=True)])
    assert ev.statuses() == {"a": True, "b": True, "c": True, "two": True, "zero": True,
                             "inv": False}
    assert report(ev, "a", THREE, False) is True  # a itself, and inv (3 needed) flips
    assert ev.statuses() == {"a": False, "b": True, "c": True, "two": True, "zero": True,
                             "inv": True}
    report(ev, "b", THREE, False)
    assert ev.status("two") is False and ev.status("zero") is True
    report(ev, "a", THREE, True)
    assert ev.status("two") is True


def test_nested_calculated_checks_follow_their_children() -> None:
    ev = HealthEvaluator([http("a"), http("b"), calculated("inner", ("a", "b"), 2),
                          http("c"), calculated("outer", ("inner", "c"), 2)])
    assert ev.status("outer") is True
    assert report(ev, "a", THREE, False) is True
    assert (ev.status("inner"), ev.status("outer")) == (False, False)
    report(ev, "a", THREE, True)
    assert ev.status("outer") is True


def test_a_child_the_lab_does_not_know_counts_unhealthy() -> None:
    ev = HealthEvaluator([http("a"), calculated("c", ("a", "gone"), 2),
                          calculated("one", ("a", "gone"), 1)])
    assert (ev.status("c"), ev.status("one")) == (False, True)


def test_a_calculated_cycle_does_not_recurse_for_ever() -> None:
    ev = HealthEvaluator([calculated("x", ("y",), 1), calculated("y", ("x",), 1)])
    assert set(ev.statuses()) == {"x", "y"}


def test_disabled_calculated_is_healthy() -> None:
    ev = HealthEvaluator([http("a"), calculated("c", ("a",), 1, disabled=True)])
    report(ev, "a", THREE, False)
    assert (ev.status("a"), ev.status("c")) == (False, True)


def test_configure_keeps_state_of_unchanged_checks_and_resets_changed_ones() -> None:
    ev = HealthEvaluator([http("keep"), http("path"), http("port"), http("regions"),
                          http("threshold"), http("gone")])
    for check in ("keep", "path", "port", "regions", "threshold", "gone"):
        report(ev, check, THREE, False)
    assert not any(ev.statuses().values())
    ev.configure([
        http("keep", inverted=False, disabled=False, request_interval=30),  # not checker-relevant
        http("path", resource_path="/other"),
        http("port", port=9090),
        http("regions", regions=CHECKER_REGIONS[1:4]),
        http("threshold", failure_threshold=2),
        http("new"),
    ])
    assert ev.statuses() == {"keep": False, "path": True, "port": True, "regions": True,
                             "threshold": True, "new": True}
    assert ev.observations("keep") != [] and ev.observations("path") == []
    assert [c.id for c in ev.configs()] == ["keep", "path", "port", "regions", "threshold", "new"]
    assert ev.status("gone") is None and ev.observations("gone") == []


def test_configure_recomputes_inverted_and_calculated_without_losing_state() -> None:
    ev = HealthEvaluator([http("a")])
    report(ev, "a", THREE, False)
    ev.configure([http("a", inverted=True), calculated("c", ("a",), 1)])
    assert ev.statuses() == {"a": True, "c": True}
