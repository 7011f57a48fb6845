"""The risk rules: pure functions from the run's dependencies to findings.

Each rule looks for one way a service failed in the us-east-1 event of October 2025, with
its threshold here (docs/audit.md explains each):

==========================  ========  ==================================================
rule (id prefix)            severity  fires when
==========================  ========  ==================================================
region-us-east-1-only       high      a service is called in us-east-1 only and no client
                                      for it exists in another region
endpoint-single             medium    a service outside us-east-1 has one region and one
                                      endpoint host (in us-east-1 this folds into the
                                      rule above)
retry-unbounded             high      a logical call took more than ``ATTEMPTS_BOUND``
                                      attempts (botocore's and the application's joined)
retry-no-backoff            high      the application retried at once (median pause under
                                      ``NO_BACKOFF_PAUSE``) or, retrying a call
                                      ``MIN_APP_RETRIES`` times or more, its pauses did not
                                      grow ``BACKOFF_GROWTH`` times
retry-legacy                medium    a client uses botocore's legacy mode with retries on
retry-max-attempts          medium    a client is configured for more than
                                      ``MAX_CONFIGURED_ATTEMPTS`` attempts
timeouts-missing            medium    connect or read timeout above ``TIMEOUT_LIMIT``
                                      (botocore's default is 60 s); high when both are
control-plane               medium    control-plane operations called ``CONTROL_PLANE_REPEATS``
                                      times or more between data-plane calls
dependency-uninstrumented   low       traffic seen only in the lab's logs
==========================  ========  ==================================================

Ids are ``rule:service:region``: one finding per rule and dependency, stable across runs.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from chaos_dynamo.audit.catalogue import is_control_plane
from chaos_dynamo.audit.findings import SEVERITIES, Finding
from chaos_dynamo.audit.observe import CALL_LOG, Dependency, Settings
from chaos_dynamo.calllog import Call

__all__ = ["findings", "merge_by_region", "uninstrumented", "RULES", "ATTEMPTS_BOUND", "NO_BACKOFF_PAUSE", "BACKOFF_GROWTH",
           "MAX_CONFIGURED_ATTEMPTS", "TIMEOUT_LIMIT", "CONTROL_PLANE_REPEATS", "MIN_APP_RETRIES"]

ATTEMPTS_BOUND = 10
"""Attempts per logical call above this are unbounded retrying (legacy mode's DynamoDB
figure, 10, is the most botocore ever makes by default)."""
NO_BACKOFF_PAUSE = 0.010
"""Seconds: an application whose median pause before retrying is below this retries at once."""
BACKOFF_GROWTH = 4.0
"""Backoff means later pauses are longer: in a call the application retried at least
``MIN_APP_RETRIES`` times, the mean pause before the 4th and later retries must be at least
this many times the mean of the first two (capped exponential backoff with full jitter makes
it about 8 times; a loop that retries at once, or after a fixed delay, about 1; a loop whose
pauses are only the work of each attempt, such as making a new client, 1-3 on a loaded
machine, which 2 times misjudged)."""
MIN_APP_RETRIES = 5
"""Application retries of one call needed before the growth of its pauses is judged (a
bounded policy of 3-4 attempts is never judged on growth)."""
MAX_CONFIGURED_ATTEMPTS = 5
TIMEOUT_LIMIT = 10.0
"""Seconds: a connect or read timeout above this (or botocore's 60 s default) is missing."""
CONTROL_PLANE_REPEATS = 2
GLOBAL_REGIONS = frozenset({"us-east-1", "aws-global"})
"""Where a client's calls go when it names us-east-1 or a global endpoint (IAM, Route 53, STS's
global endpoint are served from us-east-1)."""

Rule = Callable[[list[Dependency]], Iterable[Finding]]


def findings(deps: list[Dependency]) -> list[Finding]:
    """Every rule's findings, most severe first, then by id (one per rule, service and region:
    the rules see the dependencies of one service and region merged, whatever their hosts)."""
    merged = merge_by_region(deps)
    out = [f for rule in RULES for f in rule(merged)]
    out += uninstrumented(deps)
    return sorted(out, key=lambda f: (SEVERITIES.index(f.severity), f.id))


def merge_by_region(deps: list[Dependency]) -> list[Dependency]:
    """One dependency per (service, region): calls, clients and counts of all its hosts.
    A merged dependency counts as seen in the call log when any of its parts was."""
    groups: dict[tuple[str, str], list[Dependency]] = {}
    for dep in deps:
        groups.setdefault((dep.service, dep.region), []).append(dep)
    out = []
    for (service, region), parts in groups.items():
        merged = Dependency(service, region, ", ".join(sorted({d.host for d in parts})),
                            CALL_LOG if any(d.seen_by == CALL_LOG for d in parts) else parts[0].seen_by)
        for dep in parts:
            merged.calls += dep.calls
            merged.clients += dep.clients
            merged.dns_queries += dep.dns_queries
            merged.dns_empty += dep.dns_empty
            merged.extra_requests.update(dep.extra_requests)
        merged.calls.sort(key=lambda c: (c.start, c.id))
        out.append(merged)
    return out


def _traffic(deps: list[Dependency]) -> str:
    """What was seen of some dependencies: calls, and what only the lab's logs saw."""
    calls = sum(len(d.calls) for d in deps)
    parts = [f"{calls} call(s)"] if calls or not any(d.seen_by != CALL_LOG for d in deps) else []
    lookups = sum(d.dns_queries for d in deps if d.seen_by != CALL_LOG)
    requests = sum(sum(d.extra_requests.values()) for d in deps)
    parts += [f"{lookups} lookup(s) seen only in the lab DNS log"] if lookups else []
    parts += [f"{requests} request(s) seen only in the lab LB log"] if requests else []
    return " and ".join(parts)


def _finding(rule: str, severity: str, dep: Dependency, title: str, evidence: str, fix: str,
             locations: Iterable[str] = ()) -> Finding:
    return Finding(f"{rule}:{dep.service}:{dep.region}", rule, severity, dep.key, title, evidence, fix,
                   tuple(locations))


def _seen(deps: list[Dependency]) -> list[Dependency]:
    """Dependencies with traffic: calls in the call log, or anything in the lab's logs."""
    return [d for d in deps if d.calls or d.seen_by != CALL_LOG]


# --- region and endpoint -------------------------------------------------------------------

def region_rules(deps: list[Dependency]) -> Iterator[Finding]:
    """A service pinned to us-east-1 (high), or elsewhere to one endpoint host (medium)."""
    by_service: dict[str, list[Dependency]] = {}
    for dep in deps:
        if dep.region != "unknown":
            by_service.setdefault(dep.service, []).append(dep)
    for service, mine in sorted(by_service.items()):
        used = _seen(mine)
        if not used:
            continue
        regions = {"us-east-1" if d.region in GLOBAL_REGIONS else d.region for d in mine}
        hosts = sorted({h for d in mine for h in d.host.split(", ")})
        traffic = _traffic(used)
        sites = [s for d in mine for s in d.sites]
        if regions == {"us-east-1"}:
            dep = used[0]
            yield _finding(
                "region-us-east-1-only", "high", dep, f"{service} is used in us-east-1 only",
                f"{traffic} to {service}, all in {', '.join(sorted({d.region for d in used}))} "
                f"(endpoint {', '.join(hosts)}); no client for {service} in another region",
                f"make a client for {service} in a second region (with the data there: DynamoDB "
                "global tables) and fail over to it when us-east-1 fails or times out; keep the "
                "regions in configuration, not in code", sites)
        elif len(regions) == 1 and len(hosts) == 1:
            dep = used[0]
            yield _finding(
                "endpoint-single", "medium", dep, f"{service} has one endpoint and no fallback",
                f"{traffic} to {service}, all to {hosts[0]} in {dep.region}; no other region "
                "or endpoint configured",
                f"configure a fallback for {service}: a second region or endpoint, and a failover "
                "path that does not need the first to answer", sites)


# --- retries ---------------------------------------------------------------------------------

def unbounded_retries(deps: list[Dependency]) -> Iterator[Finding]:
    """A logical call that took more than ATTEMPTS_BOUND attempts."""
    for dep in deps:
        longest = dep.longest_call
        if longest is None or len(longest.attempts) <= ATTEMPTS_BOUND:
            continue
        over = sum(1 for n in dep.attempts if n > ATTEMPTS_BOUND)
        state = "still retrying when the run ended" if longest.end is None else ("then succeeded" if longest.ok else "then failed")
        yield _finding(
            "retry-unbounded", "high", dep, f"unbounded retries on {dep.key}",
            f"{over} logical call(s) took more than {ATTEMPTS_BOUND} attempts; the longest, "
            f"{longest.operation}, took {len(longest.attempts)} attempts in {longest.client_calls} "
            f"client call(s) ({state})",
            "bound retries: botocore standard mode (3-4 attempts) or an application loop with a "
            "maximum attempt count, a retry budget (token bucket) and a circuit breaker; shed load "
            "instead of retrying forever", dep.sites)


def no_backoff(deps: list[Dependency]) -> Iterator[Finding]:
    """Application retries with almost no pause, or with pauses that do not grow."""
    for dep in deps:
        retried = [c for c in dep.calls if c.pauses]
        pauses = [p for c in retried for p in c.pauses]
        if not pauses:
            continue
        median = statistics.median(pauses)
        long = [c for c in retried if len(c.pauses) >= MIN_APP_RETRIES]
        first = [p for c in long for p in c.pauses[:2]]
        later = [p for c in long for p in c.pauses[3:]]
        flat = bool(long) and statistics.mean(later) < BACKOFF_GROWTH * statistics.mean(first)
        at_once = len(pauses) >= 3 and median < NO_BACKOFF_PAUSE
        if not (at_once or flat):
            continue
        how = (f"median pause {median * 1000:.1f} ms before a retry" if at_once else
               f"pauses do not grow: {statistics.mean(first) * 1000:.0f} ms on average before the first "
               f"two retries, {statistics.mean(later) * 1000:.0f} ms before the 4th and later "
               f"({len(long)} call(s) retried {MIN_APP_RETRIES} times or more)")
        yield _finding(
            "retry-no-backoff", "high", dep, f"application retries without backoff on {dep.key}",
            f"{len(retried)} logical call(s) retried by the application ({len(pauses)} retries): {how}",
            "back off between retries: capped exponential backoff with full jitter (tenacity "
            "wait_random_exponential, or botocore standard mode instead of a loop); reuse one client "
            "rather than make one per attempt", dep.sites)


def _settings_where(dep: Dependency, test: Callable[[Settings], bool]) -> list[tuple[Settings, list[str]]]:
    """The dependency's client configurations passing ``test``, each with its call sites."""
    return [(s, sorted({c.site for c in clients if c.site})) for s, clients in dep.settings().items() if test(s)]


def legacy_retries(deps: list[Dependency]) -> Iterator[Finding]:
    """botocore's legacy retry mode, with retries on (one attempt in all retries nothing)."""
    for dep in deps:
        hits = _settings_where(dep, lambda s: s.retry_mode == "legacy" and (s.max_attempts or 2) > 1)
        if hits:
            attempts = sorted({s.max_attempts for s, _ in hits if s.max_attempts})
            yield _finding(
                "retry-legacy", "medium", dep, f"legacy retry mode on {dep.key}",
                f"{len(hits)} client configuration(s) in legacy mode"
                + (f" ({'/'.join(map(str, attempts))} attempts per call)" if attempts else ""),
                "use Config(retries={'mode': 'standard'}) (or 'adaptive'): legacy mode retries DynamoDB "
                "up to 10 times with un-jittered backoff and no retry quota",
                [site for _, sites in hits for site in sites])


def many_attempts(deps: list[Dependency]) -> Iterator[Finding]:
    """A client configured for more than MAX_CONFIGURED_ATTEMPTS attempts per call."""
    for dep in deps:
        hits = _settings_where(dep, lambda s: (s.max_attempts or 0) > MAX_CONFIGURED_ATTEMPTS)
        if hits:
            most = max(s.max_attempts or 0 for s, _ in hits)
            yield _finding(
                "retry-max-attempts", "medium", dep, f"up to {most} attempts per call on {dep.key}",
                f"{len(hits)} client configuration(s) allow more than {MAX_CONFIGURED_ATTEMPTS} "
                f"attempts per call (up to {most})",
                "keep total_max_attempts at 3-5: an outage needs failover or shedding, not more attempts",
                [site for _, sites in hits for site in sites])


# --- timeouts ----------------------------------------------------------------------------------

def _missing(value: float | None) -> bool:
    return value is None or value > TIMEOUT_LIMIT


def _timeout_text(value: float | None, chosen: bool) -> str:
    if value is None:
        return "none"
    return f"{value:g} s" + ("" if chosen else " (botocore default)")


def missing_timeouts(deps: list[Dependency]) -> Iterator[Finding]:
    """Connect or read timeout left at botocore's 60 s (or above TIMEOUT_LIMIT)."""
    for dep in deps:
        hits = _settings_where(dep, lambda s: _missing(s.connect_timeout) or _missing(s.read_timeout))
        if not hits:
            continue
        both = any(_missing(s.connect_timeout) and _missing(s.read_timeout) for s, _ in hits)
        shown = "; ".join(f"connect {_timeout_text(s.connect_timeout, s.connect_timeout_set)}, "
                          f"read {_timeout_text(s.read_timeout, s.read_timeout_set)}" for s, _ in hits)
        yield _finding(
            "timeouts-missing", "high" if both else "medium", dep, f"missing timeouts on {dep.key}",
            f"{len(hits)} client configuration(s) wait longer than {TIMEOUT_LIMIT:g} s: {shown}",
            "set Config(connect_timeout=..., read_timeout=...) to a few seconds (e.g. 2 and 5): by "
            "default botocore waits 60 s for each, holding a thread per call through an outage",
            [site for _, sites in hits for site in sites])


# --- control plane on the data path -------------------------------------------------------------

def _interleaved(deps: list[Dependency]) -> list[tuple[Dependency, list[Call], Counter[str]]]:
    """Control-plane calls made between the first and last data-plane call of their process,
    per control-plane dependency, with the data-plane operations around them."""
    data: dict[int, list[Call]] = {}
    control: list[tuple[Dependency, Call]] = []
    for dep in deps:
        for call in dep.calls:
            if is_control_plane(dep.service, call.operation):
                control.append((dep, call))
            else:
                data.setdefault(call.pid, []).append(call)
    found: dict[tuple[str, str, str], tuple[Dependency, list[Call]]] = {}
    for dep, call in control:
        around = data.get(call.pid, [])
        if around and min(c.start for c in around) < call.start < max(c.start for c in around):
            found.setdefault((dep.service, dep.region, dep.host), (dep, []))[1].append(call)
    return [(dep, calls, Counter(c.operation for pid in sorted({c.pid for c in calls}) for c in data[pid]))
            for dep, calls in found.values()]


def control_plane_on_data_path(deps: list[Dependency]) -> Iterator[Finding]:
    """Control-plane operations called repeatedly between data-plane calls."""
    for dep, calls, data_ops in _interleaved(deps):
        if len(calls) < CONTROL_PLANE_REPEATS:
            continue
        ops = Counter(c.operation for c in calls)
        shown = ", ".join(f"{op} x{n}" for op, n in ops.most_common())
        around = ", ".join(f"{op} x{n}" for op, n in data_ops.most_common(3))
        yield _finding(
            "control-plane", "medium", dep, f"control-plane calls on the data path ({dep.key})",
            f"{shown} made between data-plane calls ({around})",
            f"call {', '.join(ops)} once at start-up (or cache the answer), not per request: "
            "control-plane APIs are slower, throttled harder and fail first in an outage",
            dep.sites)


# --- what the audit could not see --------------------------------------------------------------

def uninstrumented(deps: list[Dependency]) -> Iterator[Finding]:
    """Traffic seen only in the lab's logs (per service and region): its settings cannot be judged."""
    groups: dict[tuple[str, str], list[Dependency]] = {}
    for dep in deps:
        if dep.seen_by != CALL_LOG:
            groups.setdefault((dep.service, dep.region), []).append(dep)
    for parts in groups.values():
        seen = [f"{d.dns_queries} lookup(s) of {d.host}" for d in parts if d.dns_queries]
        seen += [f"{op} x{n} through the lab's load balancers" for d in parts
                 for op, n in d.extra_requests.most_common()]
        yield _finding(
            "dependency-uninstrumented", "low", parts[0], f"{parts[0].key} seen only in the lab's logs",
            f"{'; '.join(seen)}: not made by a hooked botocore client, so its retries and timeouts "
            "are unknown",
            "run that client under a Python with chaos-dynamo installed (the shim hooks botocore), "
            "or check its retry and timeout settings by hand")


RULES: tuple[Rule, ...] = (region_rules, unbounded_retries, no_backoff, legacy_retries, many_attempts,
                           missing_timeouts, control_plane_on_data_path)
"""The rules judged on dependencies merged per service and region (:func:`merge_by_region`);
:func:`uninstrumented` is judged on the unmerged ones."""
