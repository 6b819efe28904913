"""Status conditions (``metav1.Condition``): set one, keep ``lastTransitionTime`` across non-transitions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Cond:
    """A desired condition (without the bookkeeping fields)."""

    type: str
    status: Status
    reason: str
    message: str = ""


def now_rfc3339() -> str:
    """The current UTC time as the API server writes it (second precision, ``Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    current: Sequence[dict[str, Any]] | None,
    desired: Iterable[Cond],
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """The new conditions list: ``desired`` in order, each with ``observedGeneration``.

    ``lastTransitionTime`` is carried over from ``current`` when the status did not change, so
    a re-computation that changes nothing yields an identical list (and no status write).
    Conditions of other types in ``current`` are dropped: the caller owns the whole list.
    """
    by_type = {c.get("type"): c for c in current or [] if isinstance(c, dict)}
    stamp = now or now_rfc3339()
    out: list[dict[str, Any]] = []
    for cond in desired:
        old = by_type.get(cond.type)
        transition = stamp
        if old is not None and old.get("status") == cond.status and old.get("lastTransitionTime"):
            transition = str(old["lastTransitionTime"])
        entry: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": transition,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        out.append(entry)
    return out


@dataclass(frozen=True)
class Transition:
    """A condition whose status or reason changed (what an Event reports)."""

    type: str
    status: str
    reason: str
    message: str
    previous_status: str | None


def transitions(current: Sequence[dict[str, Any]] | None, new: Sequence[dict[str, Any]]) -> list[Transition]:
    """Conditions of ``new`` whose status or reason differs from ``current`` (new ones included)."""
    by_type = {c.get("type"): c for c in current or [] if isinstance(c, dict)}
    out = []
    for cond in new:
        old = by_type.get(cond["type"])
        if old is None or old.get("status") != cond["status"] or old.get("reason") != cond["reason"]:
            out.append(Transition(cond["type"], cond["status"], cond["reason"], cond.get("message", ""),
                                  None if old is None else old.get("status")))
    return out


def find(conditions: Sequence[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    """The condition of ``type_``, or None."""
    for cond in conditions or []:
        if isinstance(cond, dict) and cond.get("type") == type_:
            return cond
    return None
