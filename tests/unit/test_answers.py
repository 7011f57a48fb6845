"""The answer timeline: change-only entries per name, the `since` rule, the bound."""

from __future__ import annotations

import threading

import pytest

from chaos_dynamo.lab.answers import AnswerTimeline

A, B, C = "127.0.0.11", "127.0.0.12", "127.0.0.13"


def test_an_entry_only_when_a_names_answer_changes() -> None:
    timeline = AnswerTimeline()
    added = timeline.record(1.0, {"App.Example.com.": ([B, A], ["PRIMARY"]), "w.example.com": ([C], [])}, "start")
    assert added == [
        {"time": 1.0, "name": "app.example.com", "addresses": [A, B], "roles": ["PRIMARY"], "cause": "start"},
        {"time": 1.0, "name": "w.example.com", "addresses": [C], "roles": [], "cause": "start"},
    ]
    # Same answers (other order, other spelling): nothing new.
    assert timeline.record(2.0, {"app.example.com": ([A, B], ["PRIMARY"]), "W.example.com.": ([C], [])},
                           "change") == []
    # A role change alone is a change.
    assert [e["roles"] for e in timeline.record(3.0, {"app.example.com": ([A, B], ["SECONDARY"]),
                                                       "w.example.com": ([C], [])}, "health")] == [["SECONDARY"]]
    assert [e["time"] for e in timeline.entries("app.example.com")] == [1.0, 3.0]
    assert [e["time"] for e in timeline.entries()] == [1.0, 1.0, 3.0]


def test_a_name_that_went_away_gets_an_empty_entry_once() -> None:
    timeline = AnswerTimeline()
    timeline.record(1.0, {"a.example.com": ([A], []), "b.example.com": ([B], [])}, "start")
    gone = timeline.record(2.0, {"a.example.com": ([A], [])}, "change")
    assert gone == [{"time": 2.0, "name": "b.example.com", "addresses": [], "roles": [], "cause": "change"}]
    assert timeline.record(3.0, {"a.example.com": ([A], [])}, "change") == []
    back = timeline.record(4.0, {"a.example.com": ([A], []), "b.example.com": ([C], [])}, "change")
    assert [(e["name"], e["addresses"]) for e in back] == [("b.example.com", [C])]


def test_names_gone_are_forgotten_so_a_long_run_holds_only_current_names() -> None:
    """The planner creates new plan names every few seconds: each answers, then goes."""
    timeline = AnswerTimeline()
    for i in range(500):
        added = timeline.record(float(i), {"app.example.com": ([A], []), f"plan-{i}.example.com": ([B], [])},
                                "change")
        expected = [f"plan-{i}.example.com", f"plan-{i - 1}.example.com" if i else "app.example.com"]
        assert sorted(e["name"] for e in added) == sorted(expected)
    assert timeline.names() == ["app.example.com", "plan-499.example.com"]
    assert timeline.entries("plan-10.example.com") == [
        {"time": 10.0, "name": "plan-10.example.com", "addresses": [B], "roles": [], "cause": "change"},
        {"time": 11.0, "name": "plan-10.example.com", "addresses": [], "roles": [], "cause": "change"}]


def test_a_missing_name_is_empty() -> None:
    timeline = AnswerTimeline()
    timeline.record(1.0, {"a.example.com": ([A], []), "b.example.com": ([B], [])}, "start")
    timeline.record(2.0, {"a.example.com": ([A], [])}, "change")  # b went: its empty entry
    # b served again but answering nothing: still empty, no second empty entry.
    assert timeline.record(3.0, {"a.example.com": ([A], []), "b.example.com": ([], [])}, "change") == []
    # A name first seen answering nothing has no entry (as a name never seen).
    assert timeline.record(4.0, {"a.example.com": ([A], []), "c.example.com": ([], [])}, "change") == []
    assert timeline.entries("c.example.com") == [] and timeline.names() == ["a.example.com"]
    assert [e["addresses"] for e in timeline.entries("b.example.com")] == [[B], []]
    back = timeline.record(5.0, {"a.example.com": ([A], []), "b.example.com": ([C], [])}, "health")
    assert [(e["name"], e["addresses"]) for e in back] == [("b.example.com", [C])]


def test_since_puts_the_entry_in_effect_first() -> None:
    timeline = AnswerTimeline()
    timeline.record(1.0, {"a.example.com": ([A], []), "b.example.com": ([B], [])}, "start")
    timeline.record(2.0, {"a.example.com": ([A, B], []), "b.example.com": ([B], [])}, "change")
    timeline.record(5.0, {"a.example.com": ([B], []), "b.example.com": ([B], [])}, "health")
    timeline.record(6.0, {"a.example.com": ([B], []), "b.example.com": ([C], [])}, "health")

    assert [(e["time"], e["addresses"]) for e in timeline.entries("a.example.com", since=4.0)] == [
        (2.0, [A, B]), (5.0, [B])]
    # Exactly at an entry's time: that entry is "time >= since", the one before it comes first.
    assert [e["time"] for e in timeline.entries("a.example.com", since=5.0)] == [2.0, 5.0]
    # All names: each name's entry in effect, then everything from `since` on.
    assert [(e["name"], e["time"]) for e in timeline.entries(since=4.0)] == [
        ("b.example.com", 1.0), ("a.example.com", 2.0), ("a.example.com", 5.0), ("b.example.com", 6.0)]
    assert [e["time"] for e in timeline.entries("a.example.com", since=0.5)] == [1.0, 2.0, 5.0]
    assert timeline.entries("unknown.example.com", since=4.0) == []
    assert timeline.entries("unknown.example.com") == []


def test_the_timeline_is_bounded_but_still_change_only() -> None:
    timeline = AnswerTimeline(limit=3)
    for i in range(10):
        timeline.record(float(i), {"a.example.com": ([f"127.0.0.{i + 1}"], [])}, "change")
    assert [e["time"] for e in timeline.entries()] == [7.0, 8.0, 9.0]
    assert timeline.record(10.0, {"a.example.com": (["127.0.0.10"], [])}, "change") == []
    with pytest.raises(ValueError):
        AnswerTimeline(limit=0)


def test_entries_are_copies_and_causes_are_checked() -> None:
    timeline = AnswerTimeline()
    timeline.record(1.0, {"a.example.com": ([A], [])}, "start")
    timeline.entries()[0]["addresses"].append("mutated")
    assert timeline.entries()[0]["addresses"] == [A]
    with pytest.raises(ValueError, match="cause"):
        timeline.record(2.0, {"a.example.com": ([B], [])}, "reboot")
    assert timeline.entries()[0]["addresses"] == [A]


def test_concurrent_recorders_never_duplicate_a_change() -> None:
    timeline = AnswerTimeline()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for i in range(200):
            timeline.record(float(i), {"a.example.com": ([f"127.0.1.{i % 2}"], [])}, "change")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = timeline.entries("a.example.com")
    assert all(x["addresses"] != y["addresses"] for x, y in zip(entries, entries[1:], strict=False))
