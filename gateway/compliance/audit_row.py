"""One audit row from a finished (or settling) request context (pure: no I/O, no clock).

The row holds: time the request started, request id, customer and key ids (the store's), the
channel and upstream model, tokens and cost as billed, the HTTP status sent, latency, country,
and the policy decisions (``decisions``):

* ``geo`` / ``aup`` / ``geoSource`` / ``subdivision``: the compliance checks
  (:func:`.pipeline.audit_fields`);
* ``outcome``: how the last upstream attempt ended (``ok``, ``client_abort``, ``upstream_502``, ...);
* ``attempts``: upstream attempts made; ``servedModel``: the model served when the tier's
  downgrade replaced the requested one; ``byok``: true for bring-your-own-key requests (with
  ``byokProvider`` when the client named it); ``usageEstimated``: tokens were estimated, the
  upstream reported none.

Prompt and completion text only when ``content`` is true (``audit.logPromptContent``) and never
for BYOK requests (:func:`is_byok`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..store.models import AuditEvent, KeyRecord
from .audit_text import clip, completion_text, prompt_text, stream_completion_text
from .pipeline import audit_fields

if TYPE_CHECKING:
    from ..hooks import RequestContext

#: ``KeyInfo.extra`` entry holding the store's key record (``newapi_gateway.metering.resolver.RECORD``).
KEY_RECORD = "record"
#: Statuses of attempts whose answer started as a 200 stream (the client got a 200).
_STREAMED_OUTCOMES = frozenset({"ok", "client_abort", "upstream_abort", "upstream_error"})


@dataclass(frozen=True, slots=True)
class Billing:
    """What the request was billed (zero for unbilled requests)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost: int = 0
    estimated: bool = False


NOT_BILLED = Billing()


def is_byok(ctx: RequestContext) -> bool:
    """True when the request carried a BYOK key (even when it never reached a channel)."""
    if ctx.byok or ctx.byok_provider is not None:
        return True
    if ctx.channel is not None and ctx.channel.byok:
        return True
    plan = ctx.plan
    return plan is not None and bool(plan.candidates) and all(c.byok for c in plan.candidates)


def status_of(ctx: RequestContext) -> int:
    """The HTTP status sent (``ctx.status``), or while the request is still settling the status its
    outcome implies (``ok`` and cut streams: 200; ``upstream_429``: 429)."""
    if ctx.status:
        return ctx.status
    outcome = ctx.outcome
    if outcome in _STREAMED_OUTCOMES:
        return 200
    if outcome.startswith("upstream_") and outcome[9:].isdigit():
        return int(outcome[9:])
    return 0


def key_ids(ctx: RequestContext) -> tuple[int | None, int | None]:
    """``(customer id, key id)`` of the store's key record behind the request, when there is one."""
    record = ctx.key.extra.get(KEY_RECORD)
    if isinstance(record, KeyRecord):
        return record.customer_id, record.id
    return None, None


def decisions(
    ctx: RequestContext, estimated: bool = False, fields: dict[str, str | None] | None = None
) -> dict[str, Any]:
    """The ``decisions`` column: compliance verdicts and routing facts (None values dropped);
    ``fields``: :func:`.pipeline.audit_fields` of the request when the caller has them already."""
    if fields is None:
        fields = audit_fields(ctx.notes)
    out: dict[str, Any] = {k: v for k, v in fields.items() if v is not None and k != "country"}
    if ctx.outcome:
        out["outcome"] = ctx.outcome
    if ctx.attempts:
        out["attempts"] = ctx.attempts
    plan = ctx.plan
    if plan is not None and plan.served != plan.requested:
        out["servedModel"] = plan.served
    if is_byok(ctx):
        out["byok"] = True
        if ctx.byok_provider is not None:
            out["byokProvider"] = ctx.byok_provider
    if estimated:
        out["usageEstimated"] = True
    return out


def content(ctx: RequestContext) -> tuple[str | None, str | None]:
    """``(prompt, completion)`` texts, clipped (the caller decides whether they may be kept)."""
    prompt = clip(prompt_text(ctx.operation, ctx.body))
    if ctx.stream and ctx.capture is not None:
        completion = stream_completion_text(ctx.capture)
    else:
        completion = completion_text(ctx.response_body)
    return prompt or None, clip(completion) or None


def build_row(
    ctx: RequestContext,
    *,
    ts: datetime,
    latency_ms: int,
    billing: Billing = NOT_BILLED,
    log_content: bool = False,
) -> AuditEvent:
    """The audit row of ``ctx``; ``log_content`` is ignored for BYOK requests."""
    customer_id, key_id = key_ids(ctx)
    channel = ctx.channel
    plan = ctx.plan
    location = audit_fields(ctx.notes)
    prompt = completion = None
    if log_content and not is_byok(ctx):
        prompt, completion = content(ctx)
    return AuditEvent(
        ts=ts,
        request_id=ctx.request_id,
        status=status_of(ctx),
        customer_id=customer_id,
        key_id=key_id,
        channel=channel.name if channel is not None else None,
        model=ctx.model or None,
        upstream_model=channel.upstream_model(plan.served) if channel is not None and plan is not None else None,
        input_tokens=billing.input_tokens,
        output_tokens=billing.output_tokens,
        cost=billing.cost,
        latency_ms=max(0, latency_ms),
        country=location["country"],
        decisions=decisions(ctx, billing.estimated, location),
        prompt=prompt,
        completion=completion,
    )


def finish_row(row: AuditEvent, ctx: RequestContext, latency_ms: int, log_content: bool) -> None:
    """Bring a row built at settle time up to date when the request has finished: the status sent,
    the whole latency, the decisions and (when kept) the completion of a stream."""
    row.status = status_of(ctx)
    row.latency_ms = max(row.latency_ms, latency_ms)
    before = row.decisions
    if before.get("outcome") != (ctx.outcome or None) or before.get("attempts") != (ctx.attempts or None):
        row.decisions = decisions(ctx, bool(before.get("usageEstimated")))
    if log_content and not is_byok(ctx) and row.completion is None:
        row.completion = content(ctx)[1]
