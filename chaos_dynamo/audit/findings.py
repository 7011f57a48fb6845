"""A finding: one risk the audit found, with a stable id a baseline can list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Finding", "SEVERITIES", "at_or_above"]

SEVERITIES = ("high", "medium", "low")
"""Most severe first."""


@dataclass(frozen=True)
class Finding:
    """One risk.

    Attributes:
        id: stable across runs (``rule:service:region`` for what a run observed,
            ``static-rule:service:file:function`` for what the static scan found), so a
            baseline can list it.
        rule: the rule's name (the id's first part).
        severity: ``high``, ``medium`` or ``low``.
        dependency: ``service@region`` (or ``service@?`` when the region is not known).
        title: one line.
        evidence: what was seen, with numbers.
        fix: what to change.
        locations: ``file:line`` of the code concerned.
    """

    id: str
    rule: str
    severity: str
    dependency: str
    title: str
    evidence: str
    fix: str
    locations: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "rule": self.rule, "severity": self.severity, "dependency": self.dependency,
                "title": self.title, "evidence": self.evidence, "fix": self.fix,
                "locations": list(self.locations)}


def at_or_above(severity: str, threshold: str) -> bool:
    """Whether ``severity`` is ``threshold`` or more severe."""
    return SEVERITIES.index(severity) <= SEVERITIES.index(threshold)
