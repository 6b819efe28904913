"""Per-channel circuit breaker: a pure state machine with an injected clock.

closed --(N consecutive failures)--> open --(cooldown elapsed, one caller)--> half-open
half-open --(probe succeeds)--> closed;  half-open --(probe fails)--> open (cooldown restarts)

One error never opens a channel (unless the threshold is 1). While open, :meth:`Breaker.allow`
refuses every caller; after the cooldown exactly one caller is let through as the probe and every
other caller is refused until that probe reports. A probe that ends without a verdict (client
gone) calls :meth:`Breaker.release` so the next caller can probe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half-open"]
#: Numeric state for the ``gateway_circuit_state`` gauge.
STATE_VALUE: dict[str, int] = {"closed": 0, "open": 1, "half-open": 2}

#: ``on_change(channel, old_state, new_state)``, called on every transition (logs and metrics).
Listener = Callable[[str, str, str], None]


class Breaker:
    """The breaker of one channel."""

    __slots__ = ("_probing", "clock", "cooldown", "failures", "name", "on_change", "opened_at", "state", "threshold")

    def __init__(
        self,
        name: str,
        threshold: int,
        cooldown: float,
        clock: Callable[[], float],
        on_change: Listener | None = None,
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.on_change = on_change
        self.state: State = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self._probing = False

    def allow(self) -> bool:
        """May a request be sent to this channel now? (In half-open, True at most once per probe.)"""
        if self.state == "closed":
            return True
        if self.state == "open":
            if self.clock() - self.opened_at < self.cooldown:
                return False
            self._move("half-open")
        if self._probing:
            return False
        self._probing = True
        return True

    def would_allow(self) -> bool:
        """Like :meth:`allow` but without taking the probe slot (for listings and planning)."""
        if self.state == "closed":
            return True
        if self.state == "open":
            return self.clock() - self.opened_at >= self.cooldown
        return not self._probing

    def success(self) -> None:
        self.failures = 0
        self._probing = False
        if self.state != "closed":
            self._move("closed")

    def failure(self) -> None:
        self._probing = False
        if self.state == "half-open":
            self.opened_at = self.clock()
            self._move("open")
            return
        self.failures += 1
        if self.state == "closed" and self.failures >= self.threshold:
            self.opened_at = self.clock()
            self._move("open")

    def release(self) -> None:
        """The request let through ended without a verdict (e.g. the client went away)."""
        self._probing = False

    def _move(self, new: State) -> None:
        old, self.state = self.state, new
        if new == "closed":
            self.failures = 0
        if self.on_change is not None:
            self.on_change(self.name, old, new)


class BreakerBoard:
    """The breakers of all channels, by channel name; survives routing table reloads."""

    def __init__(self, clock: Callable[[], float], on_change: Listener | None = None) -> None:
        self.clock = clock
        self.on_change = on_change
        self._breakers: dict[str, Breaker] = {}

    def get(self, name: str, threshold: int, cooldown: float) -> Breaker:
        """The breaker for ``name``, created closed on first use; settings follow the current table."""
        b = self._breakers.get(name)
        if b is None:
            b = self._breakers[name] = Breaker(name, threshold, cooldown, self.clock, self.on_change)
        elif b.threshold != threshold or b.cooldown != cooldown:
            b.threshold, b.cooldown = threshold, cooldown
        return b

    def states(self) -> dict[str, str]:
        return {name: b.state for name, b in self._breakers.items()}

    def retain(self, names: set[str]) -> None:
        """Forget breakers of channels no longer in the table."""
        for name in [n for n in self._breakers if n not in names]:
            del self._breakers[name]
