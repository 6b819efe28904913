"""The gateway's live state: the current snapshot (swapped atomically on reload), breakers, metrics.

Routing table and credentials come from independent sources (file or Kubernetes) and are
combined here: every accepted change compiles a new immutable :class:`Snapshot` and replaces the
reference in one assignment. Requests read ``state.snapshot`` once, when they start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping

from .breaker import STATE_VALUE, BreakerBoard
from .credentials import Credentials
from .metrics import GatewayMetrics, LabelValues
from .routing_table import RoutingTable
from .snapshot import Snapshot, compile_snapshot

log = logging.getLogger("newapi_gateway.state")


class GatewayState:
    def __init__(self, metrics: GatewayMetrics | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics or GatewayMetrics()
        self.snapshot: Snapshot | None = None
        self.table: RoutingTable | None = None
        self.credentials: Credentials = Credentials()
        self.breakers = BreakerBoard(clock, on_change=self._circuit_changed)
        self.metrics.circuit_state.collect = self._circuit_states

    # -- loading ---------------------------------------------------------------------------------

    def set_table(self, table: RoutingTable, source: str) -> Snapshot:
        """Install a validated routing table (keeps the current credentials)."""
        self.table = table
        snap = self._recompile()
        self.metrics.reloads.inc((source, "ok"))
        log.info(
            "routing table loaded",
            extra={"source": source, "version": snap.version, "instance": table.instance,
                   "channels": len(snap.channels), "unusable": dict(snap.unusable)},
        )
        return snap

    def set_credentials(self, credentials: Credentials, source: str) -> None:
        """Install new upstream credentials (recompiles the current table, if any)."""
        self.credentials = credentials
        self.metrics.reloads.inc((source, "ok"))
        log.info("upstream credentials loaded", extra={"source": source, "credentials": sorted(credentials)})
        if self.table is not None:
            snap = self._recompile()
            if snap.unusable:
                log.warning("channels without credentials are not routed", extra={"unusable": dict(snap.unusable)})

    def reject(self, source: str, error: Exception) -> None:
        """A table or credentials document was invalid: keep the current one, log and count it."""
        self.metrics.reloads.inc((source, "rejected"))
        log.error(
            "rejected invalid configuration; keeping the current one",
            extra={"source": source, "error": str(error),
                   "current_version": self.snapshot.version if self.snapshot else None},
        )

    def _recompile(self) -> Snapshot:
        assert self.table is not None
        snap = compile_snapshot(self.table, self.credentials)
        self.snapshot = snap  # the atomic swap: requests in flight keep their own reference
        self.breakers.retain(set(snap.channels))
        self.metrics.table_info.clear()
        self.metrics.table_info.set((snap.version, self.table.instance), 1)
        return snap

    # -- breakers --------------------------------------------------------------------------------

    def _circuit_changed(self, channel: str, old: str, new: str) -> None:
        self.metrics.circuit_transitions.inc((channel, new))
        level = logging.WARNING if new == "open" else logging.INFO
        log.log(level, "circuit breaker %s -> %s", old, new, extra={"channel": channel, "circuit": new})

    def _circuit_states(self) -> Iterable[tuple[LabelValues, float]]:
        return [((name, ), float(STATE_VALUE[s])) for name, s in self.breakers.states().items()]

    def circuit_states(self) -> Mapping[str, str]:
        return self.breakers.states()
