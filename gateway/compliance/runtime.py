"""The compliance plane of one gateway process: checks, disclosure page, audit log, retention.

``newapi gateway`` builds one :class:`CompliancePlane` at start-up:

* :meth:`install` adds the geo/AUP checks to the request hooks (before the metering layer's
  admission, so a refused request consumes no rate-limit budget and holds no credit);
* :meth:`accept` is called for every routing table before it is installed: a table whose
  compliance settings do not compile is refused and the current one kept;
* :meth:`routes` is the public ``GET /legal/llm-providers``;
* with a store, :meth:`open_audit` starts the audit log (rows settled with debits, other rows
  batched) and the retention job; :meth:`admin` gives the admin API's compliance endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..hooks import Hooks
from ..routing_table import RoutingTable
from ..store import Store
from .admin_api import ComplianceAdmin, ProbeTargets, admin_extension
from .audit import AuditLog
from .audit_retention import DEFAULT_INTERVAL, retention_forever
from .audit_writer import AuditWriter
from .aup_policy import load_policy_library
from .pipeline import ComplianceHooks, Handler
from .problems import ComplianceConfigError

if TYPE_CHECKING:
    from ..admin.routes import AdminExtension
    from ..state import GatewayState

log = logging.getLogger("newapi_gateway.compliance")


class CompliancePlane:
    """Issue 7's request-time controls for one gateway process."""

    def __init__(self, geoip_database: str | None = None, policies: str | None = None) -> None:
        library = load_policy_library(Path(policies) if policies else None)
        self.checks = ComplianceHooks(library, geoip_database=geoip_database)
        self.geoip_database = geoip_database
        self.audit: AuditLog | None = None
        self._writer: AuditWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- request path ----------------------------------------------------------------------------

    def install(self, hooks: Hooks) -> None:
        """Geo and AUP checks (and, once opened, the audit log's hooks)."""
        self.checks.install(hooks)
        if self.audit is not None:
            self.audit.install(hooks)

    def accept(self, table: RoutingTable) -> ComplianceConfigError | None:
        """Compile the table's compliance plan; the error when the table must be refused."""
        try:
            self.checks.precompile(table)
        except ComplianceConfigError as err:
            return err
        return None

    def routes(self, state: GatewayState) -> list[tuple[str, str, Handler]]:
        """The public disclosure page, for ``build_app(extra_routes=...)``."""
        return [self.checks.disclosure_route(lambda: state.snapshot.table if state.snapshot else None)]

    # -- audit -----------------------------------------------------------------------------------

    def open_audit(
        self,
        store: Store,
        retention_days: Callable[[], int | None],
        *,
        retention_interval: float = DEFAULT_INTERVAL,
        flush_interval: float = 0.2,
    ) -> AuditLog:
        """Start the batched writer and the retention job on ``store``; returns the audit log (install
        its hooks and give :meth:`AuditLog.settled_row` to the meter)."""
        self._writer = AuditWriter(store, flush_interval=flush_interval)
        self._writer.start()
        self.audit = AuditLog(self._writer)
        first = min(5.0, retention_interval)
        self._tasks.append(asyncio.get_running_loop().create_task(
            retention_forever(store, retention_days, interval=retention_interval, first_delay=first),
            name="audit-retention"))
        return self.audit

    def admin(self, state: GatewayState, targets: ProbeTargets) -> AdminExtension:
        """The admin API's compliance endpoints (summary, retention probe) for this process's stores."""
        return admin_extension(ComplianceAdmin(lambda: state.snapshot, self.checks, targets, self.geoip_database))

    async def close(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a budget
        """Write the queued audit rows and stop the background jobs."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._writer is not None:
            await self._writer.close(timeout)
