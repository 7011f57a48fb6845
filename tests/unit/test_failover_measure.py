"""Failover checkers on scripted answer histories whose right answers are known."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from chaos_dynamo.errors import ConfigError
from chaos_dynamo.failover import measure
from chaos_dynamo.failover.measure import AnswerEntry, Span

T0 = 1_700_000_000.0
A, B, C, D = "127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"


def e(t: float, *addresses: str, roles: Sequence[str] = ()) -> AnswerEntry:
    """An entry ``t`` seconds after T0."""
    return AnswerEntry(T0 + t, frozenset(addresses), frozenset(roles))


def tl(entries: Sequence[AnswerEntry], start: float = 0.0, end: float = 600.0,
       name: str = "app.example.com") -> measure.AnswerTimeline:
    return measure.answer_timeline(name, entries, Span(T0 + start, T0 + end))


# --- members, spans, fleet -----------------------------------------------------------------


@pytest.mark.parametrize(("t", "members"), [
    (-1.0, set()),            # before the first entry: nothing answered
    (0.0, {A, B, C}),         # at an entry's time: that entry
    (5.0, {A, B, C}),
    (10.0, {A, B}),           # simultaneous entries: the last one is in effect
    (99.0, {A, B}),
])
def test_members_at_is_the_last_entry_at_or_before(t: float, members: set[str]) -> None:
    entries = [e(10, A), e(0, A, B, C), e(10, A, B)]  # unsorted on purpose
    assert measure.members_at(entries, T0 + t) == members


def test_the_state_in_effect_at_the_start_comes_from_entries_before_it() -> None:
    timeline = tl([e(-500, A, B, C, D), e(-100, A, B), e(50, A)], start=0)
    assert [(s.time - T0, set(s.addresses)) for s in timeline.states] == [(0, {A, B}), (50, {A})]
    assert timeline.span == Span(T0, T0 + 600) and timeline.fleet() == 2  # D before the span does not count


def test_an_entry_exactly_at_the_start_is_the_state_at_the_start() -> None:
    timeline = tl([e(-10, A), e(0, A, B)], start=0)
    assert [set(s.addresses) for s in timeline.states] == [{A, B}]


def test_a_history_that_begins_inside_the_span_starts_the_span_there() -> None:
    timeline = tl([e(100, A, B), e(200, A)], start=0, end=300)
    assert timeline.span == Span(T0 + 100, T0 + 300)
    assert timeline.requested == Span(T0, T0 + 300)


def test_simultaneous_entries_and_repeats_collapse() -> None:
    timeline = tl([e(0, A, B), e(10, A), e(10, A, B), e(20, A, B), e(30, B)])
    assert [(s.time - T0, set(s.addresses)) for s in timeline.states] == [(0, {A, B}), (30, {B})]


def test_entries_after_the_end_are_ignored() -> None:
    timeline = tl([e(0, A, B), e(700, A)], end=600)
    assert len(timeline.states) == 1


@pytest.mark.parametrize("entries", [[], [e(700, A)]], ids=["empty", "only-after-the-end"])
def test_no_history_is_an_error_naming_the_name(entries: list[AnswerEntry]) -> None:
    with pytest.raises(ConfigError) as caught:
        tl(entries, end=600, name="pool.app.example.com")
    assert caught.value.field == "name"
    assert "'pool.app.example.com'" in str(caught.value) and "create its records" in str(caught.value)


def test_a_span_cannot_run_backwards() -> None:
    with pytest.raises(ValueError):
        Span(T0 + 1, T0)


@pytest.mark.parametrize(("fleet_size", "fleet"), [(0, 3), (5, 5), (2, 2)])
def test_fleet_is_the_argument_else_the_most_addresses_in_the_span(fleet_size: int, fleet: int) -> None:
    assert tl([e(0, A, B), e(10, A, B, C), e(20, A)]).fleet(fleet_size) == fleet


def test_capacity_timeline_has_one_point_per_state_with_fraction_and_role() -> None:
    timeline = tl([e(-5, A, B, roles=["PRIMARY"]), e(10, A, roles=["PRIMARY"]), e(20, C, roles=["SECONDARY"]),
                   e(30)], start=0)
    points = measure.capacity_timeline(timeline, timeline.fleet())
    assert [(p.time - T0, p.fraction, p.role) for p in points] == [
        (0, 1.0, "PRIMARY"), (10, 0.5, "PRIMARY"), (20, 0.5, "SECONDARY"), (30, 0.0, None)]
    assert points[0].to_dict() == {"time": T0, "addresses": [A, B], "fraction": 1.0, "role": "PRIMARY"}


# --- flaps -----------------------------------------------------------------------------------

FLAPS = [
    # (id, entries, window, most, total, by_member)
    ("leaves-and-returns-twice-inside-300s", [e(0, A, B, C), e(10, A, B), e(20, A, B, C), e(30, A, B),
                                              e(40, A, B, C)], 300, 2, 2, {C: 2}),
    ("returns-outside-the-window", [e(0, A, B), e(10, A), e(20, A, B), e(400, A), e(420, A, B)],
     300, 1, 2, {B: 2}),
    ("removal-without-return", [e(0, A, B, C), e(10, A, B), e(20, A)], 300, 0, 0, {}),
    ("a-new-member-is-not-a-flap", [e(0, A), e(10, A, B), e(20, A, B, C)], 300, 0, 0, {}),
    ("left-before-the-span-returns-inside", [e(-50, A, B), e(-10, A), e(20, A, B)], 300, 0, 0, {}),
    ("gone-for-zero-seconds", [e(0, A, B), e(10, A), e(10, A, B)], 300, 0, 0, {}),
    ("the-whole-name-empties-and-returns", [e(0, A, B, C), e(10), e(20, A, B, C)], 300, 3, 3,
     {A: 1, B: 1, C: 1}),
    ("window-longer-than-the-span", [e(0, A, B), e(10, A), e(20, A, B), e(30, A), e(40, A, B)],
     10_000, 2, 2, {B: 2}),
    ("re-entries-exactly-a-window-apart-share-it", [e(0, A, B), e(10, A), e(20, A, B), e(300, A),
                                                     e(320, A, B)], 300, 2, 2, {B: 2}),
    ("two-members-flapping-apart", [e(0, A, B, C), e(10, A, C), e(20, A, B, C), e(30, A, B),
                                    e(40, A, B, C), e(500, B, C), e(510, A, B, C)], 60, 2, 3,
     {A: 1, B: 1, C: 1}),
]


@pytest.mark.parametrize(("entries", "window", "most", "total", "by_member"),
                         [f[1:] for f in FLAPS], ids=[f[0] for f in FLAPS])
def test_flaps(entries: list[AnswerEntry], window: float, most: int, total: int,
               by_member: dict[str, int]) -> None:
    result = measure.flaps(tl(entries), window)
    assert (result.most, result.total, result.by_member) == (most, total, by_member)
    assert (result.at is None) == (most == 0)


def test_the_flap_window_reported_starts_at_its_first_re_entry() -> None:
    result = measure.flaps(tl([e(0, A, B), e(10, A), e(20, A, B), e(400, A), e(420, A, B), e(430, A),
                               e(440, A, B)]), 60)
    assert result.most == 2 and result.at == T0 + 420


# --- capacity removed ------------------------------------------------------------------------

REMOVED = [
    # (id, entries, window, fleet_size, fraction, removals, total)
    ("one-of-four", [e(0, A, B, C, D), e(10, A, B, C)], 60, 0, 0.25, 1, 1),
    ("two-at-once-then-one-inside-a-minute", [e(0, A, B, C, D), e(10, A, B), e(50, A)], 60, 0, 0.75, 3, 3),
    ("removals-more-than-a-minute-apart", [e(0, A, B, C, D), e(10, A, B, C), e(80, A, B)], 60, 0, 0.25, 1, 2),
    ("removed-returned-removed-counts-twice", [e(0, A, B, C, D), e(10, A, B, C), e(20, A, B, C, D),
                                              e(30, A, B, C)], 60, 0, 0.5, 2, 2),
    ("additions-remove-nothing", [e(0, A), e(10, A, B), e(20, A, B, C)], 60, 0, 0.0, 0, 0),
    ("a-swap-removes-one", [e(0, A, B), e(10, A, C)], 60, 0, 0.5, 1, 1),
    ("fleet-size-argument", [e(0, A, B, C, D), e(10, A)], 60, 10, 0.3, 3, 3),
    ("fleet-zero", [e(0), e(10)], 60, 0, 0.0, 0, 0),
    ("window-longer-than-the-span", [e(0, A, B, C, D), e(100, A, B, C), e(500, A, B)], 10_000, 0, 0.5, 2, 2),
]


@pytest.mark.parametrize(("entries", "window", "fleet_size", "fraction", "removals", "total"),
                         [r[1:] for r in REMOVED], ids=[r[0] for r in REMOVED])
def test_capacity_removed(entries: list[AnswerEntry], window: float, fleet_size: int, fraction: float,
                          removals: int, total: int) -> None:
    timeline = tl(entries)
    result = measure.capacity_removed(timeline, timeline.fleet(fleet_size), window)
    assert result.fraction == pytest.approx(fraction)
    assert (result.removals, result.total) == (removals, total)


def test_a_removal_before_the_span_is_not_counted() -> None:
    timeline = tl([e(-30, A, B, C, D), e(-10, A, B), e(10, A)], start=0)
    result = measure.capacity_removed(timeline, 4, 60)
    assert (result.removals, result.fraction, result.at) == (1, 0.25, T0 + 10)


# --- minimum capacity, time degraded ---------------------------------------------------------


@pytest.mark.parametrize(("entries", "fleet_size", "fraction", "at", "members"), [
    ([e(0, A, B, C, D), e(10, A, B), e(20, A), e(30, A, B, C, D), e(40, B)], 0, 0.25, 20, {A}),  # first lowest
    ([e(-10, A), e(10, A, B)], 0, 0.5, 0, {A}),            # the state at the start counts
    ([e(0, A, B), e(10, A, B, C)], 4, 0.5, 0, {A, B}),     # fleet_size bigger than seen
    ([e(0, A, B, C), e(10)], 0, 0.0, 10, set()),           # the name answered nothing
    ([e(0), e(10)], 0, 0.0, 0, set()),                     # fleet 0
])
def test_min_capacity(entries: list[AnswerEntry], fleet_size: int, fraction: float, at: float,
                      members: set[str]) -> None:
    timeline = tl(entries, start=0)
    result = measure.min_capacity(timeline, timeline.fleet(fleet_size))
    assert (result.fraction, result.at - T0, set(result.members)) == (pytest.approx(fraction), at, members)


DEGRADED = [
    # (id, entries, end, below, seconds, fraction_of_span, periods)
    ("one-dip", [e(0, A, B, C), e(10, A, B), e(30, A, B, C)], 100, 1.0, 20, 0.2, [(10, 30)]),
    ("a-lower-threshold-ignores-it", [e(0, A, B, C), e(10, A, B), e(30, A, B, C)], 100, 0.5, 0, 0.0, []),
    ("still-degraded-at-the-end", [e(0, A, B), e(60, A)], 100, 1.0, 40, 0.4, [(60, 100)]),
    ("consecutive-degraded-states-merge", [e(0, A, B, C), e(10, A, B), e(20, A), e(40, A, B, C)], 100,
     1.0, 30, 0.3, [(10, 40)]),
    ("fleet-zero-is-degraded-throughout", [e(0), e(50)], 100, 1.0, 100, 1.0, [(0, 100)]),
    ("zero-length-span", [e(0, A, B), e(100, A)], 0, 1.0, 0, 0.0, []),
]


@pytest.mark.parametrize(("entries", "end", "below", "seconds", "share", "periods"),
                         [d[1:] for d in DEGRADED], ids=[d[0] for d in DEGRADED])
def test_seconds_degraded(entries: list[AnswerEntry], end: float, below: float, seconds: float, share: float,
                          periods: list[tuple[float, float]]) -> None:
    timeline = tl(entries, start=0, end=end)
    result = measure.seconds_degraded(timeline, timeline.fleet(), below)
    assert result.seconds == pytest.approx(seconds) and result.fraction_of_span == pytest.approx(share)
    assert [(a - T0, b - T0) for a, b in result.periods] == periods
    assert result.span_seconds == pytest.approx(end)


def test_seconds_degraded_against_a_given_fleet() -> None:
    timeline = tl([e(0, A, B, C)], start=0, end=50)
    assert measure.seconds_degraded(timeline, 4).seconds == pytest.approx(50)  # 3 of 4 all along


# --- roles -------------------------------------------------------------------------------------

P, S = ["PRIMARY"], ["SECONDARY"]
ROLES = [
    # (id, entries, window, switches, oscillations, roles)
    ("primary-only", [e(0, A, roles=P), e(10, A, B, roles=P)], 300, 0, 0, ["PRIMARY"]),
    ("failover-once", [e(0, A, roles=P), e(10, C, roles=S)], 300, 1, 0, ["PRIMARY", "SECONDARY"]),
    ("p-s-p-is-one", [e(0, A, roles=P), e(10, C, roles=S), e(20, A, roles=P)], 300, 2, 1,
     ["PRIMARY", "SECONDARY", "PRIMARY"]),
    ("p-s-p-s-is-two", [e(0, A, roles=P), e(10, C, roles=S), e(20, A, roles=P), e(30, C, roles=S)], 300, 3, 2,
     ["PRIMARY", "SECONDARY", "PRIMARY", "SECONDARY"]),
    ("failback-after-the-window-is-not-one", [e(0, A, roles=P), e(10, C, roles=S), e(400, A, roles=P)], 300,
     2, 0, ["PRIMARY", "SECONDARY", "PRIMARY"]),
    ("entries-without-a-role-are-ignored", [e(0, A, roles=P), e(10), e(20, A, roles=P)], 300, 0, 0,
     ["PRIMARY"]),
    ("primary-wins-over-secondary", [e(0, A, roles=["PRIMARY", "SECONDARY"]), e(10, C, roles=S)], 300, 1, 0,
     ["PRIMARY", "SECONDARY"]),
    ("no-failover-records", [e(0, A), e(10, A, B)], 300, 0, 0, []),
]


@pytest.mark.parametrize(("entries", "window", "switches", "oscillations", "roles"),
                         [r[1:] for r in ROLES], ids=[r[0] for r in ROLES])
def test_roles(entries: list[AnswerEntry], window: float, switches: int, oscillations: int,
               roles: list[str]) -> None:
    result = measure.roles(tl(entries), window)
    assert (result.switches, result.oscillations) == (switches, oscillations)
    assert [c.role for c in result.changes] == roles


def test_the_role_in_effect_at_the_start_is_the_first_role() -> None:
    result = measure.roles(tl([e(-100, C, roles=S), e(-50, A, roles=P), e(10, C, roles=S), e(20, A, roles=P)],
                              start=0), 300)
    assert [(c.time - T0, c.role) for c in result.changes] == [(0, "PRIMARY"), (10, "SECONDARY"),
                                                               (20, "PRIMARY")]
    assert (result.switches, result.oscillations) == (2, 1)


@pytest.mark.parametrize(("roles", "role"), [((), None), (("PRIMARY",), "PRIMARY"), (("SECONDARY",), "SECONDARY"),
                                             (("SECONDARY", "PRIMARY"), "PRIMARY"), (("OTHER",), None)])
def test_an_entrys_role(roles: tuple[str, ...], role: str | None) -> None:
    assert AnswerEntry(T0, frozenset(), frozenset(roles)).role == role


# --- windows -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("events", "window", "most", "at"), [
    ([], 60, 0, None),
    ([(5.0, 1.0)], 60, 1, 5.0),
    ([(0.0, 1.0), (60.0, 1.0), (61.0, 1.0)], 60, 2, 0.0),   # closed window: 0 and 60 together; earliest wins
    ([(0.0, 1.0), (10.0, 3.0), (100.0, 2.0)], 60, 4, 0.0),  # weights
    ([(100.0, 1.0), (0.0, 1.0), (30.0, 1.0)], 60, 2, 0.0),  # unsorted input
])
def test_most_in_window(events: list[tuple[float, float]], window: float, most: float, at: float | None) -> None:
    assert measure.most_in_window(events, window) == measure.Peak(most, at)


def test_changes_in_window_counts_batches_inside_the_span_only() -> None:
    times = [T0 - 5, T0 + 1, T0 + 2, T0 + 50, T0 + 200, T0 + 700]
    peak, total = measure.changes_in_window(times, Span(T0, T0 + 600), 60)
    assert (peak.most, peak.at, total) == (3, T0 + 1, 4)


def test_the_worked_example_of_the_docs() -> None:
    """docs/probes/failover.md: three members, window 300, span [0, 600]."""
    timeline = tl([e(0, A, B, C), e(10, A, B), e(25, A, B, C), e(40, A, C), e(45, A, B, C), e(400, A, B),
                   e(410, A, B, C), e(500, A, B)], start=0, end=600)
    flaps = measure.flaps(timeline, 300)
    assert (flaps.most, flaps.at, flaps.total, flaps.by_member) == (2, T0 + 25, 3, {B: 1, C: 2})
    removed = measure.capacity_removed(timeline, timeline.fleet(), 60)
    assert (removed.fraction, removed.removals, removed.total) == (pytest.approx(2 / 3), 2, 4)
    minimum = measure.min_capacity(timeline, timeline.fleet())
    assert (minimum.fraction, minimum.at, set(minimum.members)) == (pytest.approx(2 / 3), T0 + 10, {A, B})
    degraded = measure.seconds_degraded(timeline, timeline.fleet())
    assert degraded.seconds == pytest.approx(130) and round(degraded.fraction_of_span, 3) == 0.217
