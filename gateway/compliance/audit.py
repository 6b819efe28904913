"""The per-request audit log wired into the gateway's hooks (``newapi_gateway.hooks``).

One row per request that got past key resolution — served, refused (451 geo, 400 AUP or bad
request, 403, 404, 429 limits or credit) or failed upstream. Requests without a valid key (401)
and before the first routing table (503) get no row: there is no customer to attribute them to,
and an unauthenticated flood must not grow the table (the metrics count them).

How a row is written:

* a request the meter bills: the row is built when the meter settles the attempt
  (:meth:`AuditLog.settled_row`, the meter's ``AuditBuilder`` seam) and committed **in the same
  transaction as the debit**, so a charge never exists without its audit row; when the request
  finishes, the same row object is brought up to date (status sent, whole latency) before the
  debit is written (the meter writes it in the background after the answer);
* every other request: :meth:`AuditLog.observe` (a finish observer) queues the row for the
  batched :class:`~.audit_writer.AuditWriter`.

Nothing is written while the routing table's ``audit.enabled`` is false. Prompt and completion
text only with ``audit.logPromptContent`` and never for BYOK requests (:mod:`.audit_row`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..store import AuditEvent, Usage
from ..store.models import utcnow
from .audit_row import Billing, build_row, finish_row, is_byok
from .audit_writer import AuditWriter

if TYPE_CHECKING:
    from ..hooks import Hooks, RequestContext
    from ..snapshot import Snapshot

#: ``ctx.notes`` entry: ``(row, attempt)`` of the row settled with the debit of that attempt.
NOTE_ROW = "audit.row"


class AuditLog:
    """Builds the audit rows of one gateway process and hands them to the store."""

    def __init__(
        self,
        writer: AuditWriter,
        *,
        clock: Callable[[], float] = time.perf_counter,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.writer = writer
        self.clock = clock
        self.now = now

    def install(self, hooks: Hooks) -> None:
        """Add the stream capture check (admission) and the finish observer (first, so the settled
        row is brought up to date before anything else awaits)."""
        hooks.admission.append(self.admission)
        hooks.finish.insert(0, self.observe)
        hooks.when(self.admission, _keeps_stream_text)  # both do nothing while audit is off
        hooks.when(self.observe, _audits)

    # -- timing ----------------------------------------------------------------------------------

    def _elapsed(self, ctx: RequestContext) -> float:
        return max(0.0, self.clock() - ctx.started)

    def _started_at(self, ctx: RequestContext) -> datetime:
        return self.now() - timedelta(seconds=self._elapsed(ctx))

    def _latency_ms(self, ctx: RequestContext) -> int:
        return int(self._elapsed(ctx) * 1000)

    # -- hooks -----------------------------------------------------------------------------------

    async def admission(self, ctx: RequestContext) -> None:
        """Keep the streamed answer's bytes when the completion text goes into the row."""
        audit = ctx.snapshot.table.policy.audit
        if audit.enabled and audit.log_prompt_content and ctx.stream and not is_byok(ctx):
            ctx.capture = []

    def settled_row(self, ctx: RequestContext, held: Any, amount: int, usage: Usage) -> AuditEvent | None:
        """The meter's ``AuditBuilder``: the row settled together with the attempt's debit."""
        audit = ctx.snapshot.table.policy.audit
        if not audit.enabled:
            return None
        billing = Billing(usage.input_tokens, usage.output_tokens, amount, usage.estimated)
        row = build_row(ctx, ts=self._started_at(ctx), latency_ms=self._latency_ms(ctx), billing=billing,
                        log_content=audit.log_prompt_content)
        ctx.notes[NOTE_ROW] = (row, ctx.attempts)
        return row

    async def observe(self, ctx: RequestContext) -> None:
        """Finish observer: complete the settled row, or queue a row for an unbilled request."""
        audit = ctx.snapshot.table.policy.audit
        if not audit.enabled:
            return
        latency = self._latency_ms(ctx)
        settled: tuple[AuditEvent, int] | None = ctx.notes.get(NOTE_ROW)
        if settled is not None and settled[1] == ctx.attempts:
            finish_row(settled[0], ctx, latency, audit.log_prompt_content)
            return
        self.writer.add(build_row(ctx, ts=self._started_at(ctx), latency_ms=latency,
                                  log_content=audit.log_prompt_content))


def _audits(snapshot: Snapshot) -> bool:
    return snapshot.table.policy.audit.enabled


def _keeps_stream_text(snapshot: Snapshot) -> bool:
    audit = snapshot.table.policy.audit
    return audit.enabled and audit.log_prompt_content
