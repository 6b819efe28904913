"""Metering wired into the gateway: store-backed keys, limits admission, hold/settle, ``GET /quota``.

See docs/metering.md ("The HTTP layer") and :class:`~newapi_gateway.metering.runtime.Metering`.
"""

from __future__ import annotations

from newapi_gateway.metering.config import InvalidStateConfig, StateConfig, resolve_state
from newapi_gateway.metering.runtime import Metering

__all__ = ["InvalidStateConfig", "Metering", "StateConfig", "resolve_state"]
