"""Route 53 routing policies with health, as AWS documents them, over plain values.

Given the record sets of one name and type (in the lab's record order) and a way to tell
whether a record set is healthy, :func:`choose` says what one query may be answered
with. Health is asked for lazily and only where the policy looks at it (never for a
simple record), so a caller may compute it on demand (an alias that evaluates its
target's health resolves that target).

The rules (Amazon Route 53 Developer Guide, "How Amazon Route 53 chooses records when
health checking is configured"):

* if every record of a group is unhealthy, Route 53 treats them all as healthy and
  chooses by the routing policy as usual;
* weighted: among healthy records with a weight above 0; if there are none, among
  healthy records with weight 0 (equal chances); if none is healthy, among all records,
  weights above 0 first (all 0: equal chances);
* failover: PRIMARY when healthy, else SECONDARY when healthy, else PRIMARY; a lone
  record answers whatever its health;
* multivalue answer: up to eight healthy records; none healthy: up to eight of all;
* simple: the record, health not evaluated;
* latency, geolocation and the other policies (not modelled): the first healthy record,
  else the first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from chaos_dynamo.route53.records import RecordSet

__all__ = ["MULTIVALUE_LIMIT", "Option", "choose", "policy"]

MULTIVALUE_LIMIT = 8
"""Route 53 returns up to eight records for a multivalue answer."""

Option = tuple[int, tuple[RecordSet, ...]]
"""(relative weight, record sets answered together): one way a query may be answered."""


def policy(candidates: Sequence[RecordSet]) -> str:
    """The routing policy of a group: weighted, failover, multivalue, simple or other."""
    if any(r.weight is not None for r in candidates):
        return "weighted"
    if any(r.failover is not None for r in candidates):
        return "failover"
    if any(r.multivalue_answer for r in candidates):
        return "multivalue"
    if all(r.set_identifier is None for r in candidates):
        return "simple"
    return "other"


def choose(
    candidates: Sequence[RecordSet], healthy: Callable[[RecordSet], bool]
) -> list[Option]:
    """The options one query for this group may be answered with.

    Args:
        candidates: the record sets of one name and type, in the lab's order.
        healthy: tells whether a record set is healthy (called only where it matters).

    Returns:
        One option, except for a weighted group: one option per eligible member, with its
        weight (the caller picks one, or enumerates them all). No candidates: no options.
    """
    if not candidates:
        return []
    kind = policy(candidates)
    if kind == "weighted":
        return _weighted(candidates, healthy)
    if kind == "failover":
        return [(1, (_failover(candidates, healthy),))]
    if kind == "multivalue":
        up = [r for r in candidates if healthy(r)]
        return [(1, tuple((up or list(candidates))[:MULTIVALUE_LIMIT]))]
    if kind == "simple":
        return [(1, (candidates[0],))]
    return [(1, (next((r for r in candidates if healthy(r)), candidates[0]),))]


def _weighted(candidates: Sequence[RecordSet], healthy: Callable[[RecordSet], bool]) -> list[Option]:
    pool = [r for r in candidates if healthy(r)] or list(candidates)
    weighted = [(max(0, r.weight or 0), r) for r in pool]
    if any(w > 0 for w, _ in weighted):
        return [(w, (r,)) for w, r in weighted if w > 0]
    return [(1, (r,)) for _, r in weighted]  # all weight 0: equal chances


def _failover(candidates: Sequence[RecordSet], healthy: Callable[[RecordSet], bool]) -> RecordSet:
    primary = next((r for r in candidates if (r.failover or "").upper() == "PRIMARY"), None)
    secondary = next((r for r in candidates if (r.failover or "").upper() == "SECONDARY"), None)
    if primary is None or secondary is None:
        return primary or secondary or candidates[0]  # one record: it answers
    if healthy(primary):
        return primary
    if healthy(secondary):
        return secondary
    return primary
