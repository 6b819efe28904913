"""Conditions keep their transition time across re-computations; transitions are what Events report."""

from __future__ import annotations

from newapi_operator.controller.conditions import Cond, find, merge_conditions, transitions


def test_transition_time_kept_while_status_is_unchanged() -> None:
    first = merge_conditions(None, [Cond("Ready", "False", "Progressing", "wait")], 1, now="2026-01-01T00:00:00Z")
    again = merge_conditions(first, [Cond("Ready", "False", "Progressing", "still waiting")], 2,
                             now="2026-01-01T00:05:00Z")
    assert again[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert again[0]["observedGeneration"] == 2
    assert again[0]["message"] == "still waiting"
    flipped = merge_conditions(again, [Cond("Ready", "True", "Available", "ok")], 2, now="2026-01-01T00:06:00Z")
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T00:06:00Z"


def test_same_input_gives_identical_output() -> None:
    conds = [Cond("Ready", "True", "Available", "ok"), Cond("Degraded", "False", "AsExpected")]
    a = merge_conditions(None, conds, 3, now="2026-01-01T00:00:00Z")
    assert merge_conditions(a, conds, 3, now="2027-01-01T00:00:00Z") == a


def test_transitions_report_status_or_reason_changes_only() -> None:
    old = merge_conditions(None, [Cond("Ready", "False", "Progressing"), Cond("Degraded", "False", "AsExpected")], 1)
    new = merge_conditions(old, [Cond("Ready", "False", "Progressing", "new message"),
                                 Cond("Degraded", "True", "ChannelsExcluded")], 1)
    changed = transitions(old, new)
    assert [(t.type, t.status, t.previous_status) for t in changed] == [("Degraded", "True", "False")]
    assert [t.type for t in transitions(None, new)] == ["Ready", "Degraded"]
    assert find(new, "Degraded")["reason"] == "ChannelsExcluded"  # type: ignore[index]
    assert find(new, "Nope") is None
