"""The circuit breaker state machine (pure, clock injected)."""

from __future__ import annotations

from newapi_gateway.breaker import Breaker, BreakerBoard


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(threshold: int = 3, cooldown: float = 10.0) -> tuple[Breaker, Clock, list[tuple[str, str]]]:
    clock = Clock()
    changes: list[tuple[str, str]] = []
    b = Breaker("ch", threshold, cooldown, clock, lambda _n, old, new: changes.append((old, new)))
    return b, clock, changes


def test_one_error_does_not_open() -> None:
    b, _, changes = make(threshold=3)
    b.failure()
    assert b.state == "closed"
    assert b.allow()
    b.failure()
    assert b.state == "closed"
    assert b.allow()
    assert changes == []


def test_success_resets_the_consecutive_count() -> None:
    b, _, _ = make(threshold=3)
    b.failure()
    b.failure()
    b.success()
    b.failure()
    b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open"


def test_opens_after_threshold_and_refuses_until_cooldown() -> None:
    b, clock, changes = make(threshold=3, cooldown=10)
    for _ in range(3):
        b.failure()
    assert b.state == "open"
    assert changes == [("closed", "open")]
    assert not b.allow()
    clock.now += 9.9
    assert not b.allow()
    assert not b.would_allow()


def test_half_open_lets_exactly_one_probe_through() -> None:
    b, clock, changes = make(threshold=1, cooldown=5)
    b.failure()
    clock.now += 5
    assert b.would_allow()
    assert b.allow()  # the probe
    assert b.state == "half-open"
    assert not b.allow()  # everyone else waits for the probe
    assert not b.would_allow()
    b.success()
    assert b.state == "closed"
    assert b.allow()
    assert b.allow()
    assert changes == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


def test_failed_probe_reopens_and_restarts_the_cooldown() -> None:
    b, clock, _ = make(threshold=2, cooldown=5)
    b.failure()
    b.failure()
    clock.now += 6
    assert b.allow()
    b.failure()
    assert b.state == "open"
    clock.now += 4
    assert not b.allow()
    clock.now += 1
    assert b.allow()


def test_released_probe_frees_the_slot() -> None:
    b, clock, _ = make(threshold=1, cooldown=1)
    b.failure()
    clock.now += 1
    assert b.allow()
    b.release()
    assert b.state == "half-open"
    assert b.allow()


def test_board_keeps_breakers_by_name_and_follows_settings() -> None:
    clock = Clock()
    board = BreakerBoard(clock)
    a = board.get("a", 3, 10)
    assert board.get("a", 3, 10) is a
    assert board.get("a", 5, 20) is a
    assert a.threshold == 5
    assert a.cooldown == 20
    board.get("b", 1, 1).failure()
    assert board.states() == {"a": "closed", "b": "open"}
    board.retain({"b"})
    assert board.states() == {"b": "open"}
