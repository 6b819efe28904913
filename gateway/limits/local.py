"""In-process limiter for embedded mode (one process): same algorithm and results as Redis."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from newapi_gateway.limits.base import DAY_MS, PERIOD_MS, Gcra, LimitDecision, Limiter, LimitSpec, decide, gcra


def wall_clock_ms() -> float:
    return time.time() * 1000


@dataclass(slots=True)
class _KeyState:
    rpm_tat: float | None = None
    tpm_tat: float | None = None
    quota_day: int = -1
    quota_used: int = 0


class LocalLimiter(Limiter):
    """Limits kept in this process's memory. Only correct with ONE gateway process."""

    def __init__(self, clock: Callable[[], float] = wall_clock_ms, max_keys: int = 1_000_000) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._state: dict[int, _KeyState] = {}

    def _get(self, key_id: int, now: float) -> _KeyState:
        state = self._state.get(key_id)
        if state is None:
            if len(self._state) >= self._max_keys:
                self._prune(now)
            state = self._state[key_id] = _KeyState()
        return state

    def _prune(self, now: float) -> None:
        day = math.floor(now / DAY_MS)
        for key_id in [
            k for k, s in self._state.items()
            if (s.rpm_tat or 0) <= now and (s.tpm_tat or 0) <= now and s.quota_day != day
        ]:
            del self._state[key_id]

    async def check(self, key_id: int, spec: LimitSpec, tokens: int) -> LimitDecision:
        return self._evaluate(key_id, spec, tokens, consume=True)

    async def peek(self, key_id: int, spec: LimitSpec) -> LimitDecision:
        return self._evaluate(key_id, spec, 0, consume=False)

    def _evaluate(self, key_id: int, spec: LimitSpec, tokens: int, *, consume: bool) -> LimitDecision:
        if tokens < 0:
            raise ValueError(f"tokens: must be >= 0, got {tokens}")
        now = self._clock()
        if spec.unlimited:
            return decide(spec, now, None, None, 0, consume=consume)
        state = self._get(key_id, now)
        req: Gcra | None = gcra(state.rpm_tat, now, spec.rpm, 1 if consume else 0, PERIOD_MS) if spec.rpm else None
        tok: Gcra | None = (
            gcra(state.tpm_tat, now, spec.tpm, tokens if consume else 0, PERIOD_MS) if spec.tpm else None
        )
        day = math.floor(now / DAY_MS)
        used = state.quota_used if state.quota_day == day else 0
        decision = decide(spec, now, req, tok, used, consume=consume)
        if consume and decision.allowed:
            if req is not None:
                state.rpm_tat = req.new_tat
            if tok is not None:
                state.tpm_tat = tok.new_tat
            state.quota_day, state.quota_used = day, used + 1
        return decision
