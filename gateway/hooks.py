"""Seams of the request pipeline for the metering (issue 5) and compliance (issue 7) layers.

The pipeline for an inference request is::

    key resolution (KeyResolver)  ->  parse body  ->  admission checks  ->  route (plan)
      -> for each candidate channel:  channel filters  ->  breaker  ->  meter.authorize  ->  upstream
      -> answer  ->  meter.settle  ->  finish observers

* :class:`AdmissionCheck` runs once per request before routing (AUP "provider-strictest",
  daily quota, rate limits): raise :class:`~newapi_gateway.errors.GatewayError` to reject.
* :class:`ChannelFilter` runs per candidate channel (geo blocking of commercial channels, AUP
  "per-channel"): return an error to skip the channel; when every candidate is skipped the first
  error is the answer (e.g. 451). A filter never sees a channel a request would not use.
* :class:`Meter` places a hold before each upstream attempt (``authorize``; raise e.g. 429
  ``insufficient_quota``) and settles it exactly once with the usage known at the end
  (``settle``; also for failed attempts, with ``usage`` None).
* :class:`FinishObserver` sees every finished request (audit rows).

A hook that only has work under some routing-table settings (the audit log's hooks while audit is
off, the AUP check while enforcement is off) is installed with a condition
(:meth:`Hooks.when`): the proxy asks :meth:`Hooks.active` once per routing-table snapshot and
runs only the hooks that apply, so a feature that is off costs nothing per request.

Every hook gets the :class:`RequestContext`; it never holds a BYOK key (``byok_provider`` only),
and :class:`SafeHeaders` hides the credential headers from hooks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from multidict import CIMultiDictProxy

from .errors import GatewayError
from .keys import KeyInfo
from .routing import RoutePlan
from .snapshot import CompiledChannel, Snapshot
from .translate.base import Usage

#: Request headers hooks may never read (credentials).
HIDDEN_HEADERS = frozenset({"authorization", "x-api-key", "x-provider-key", "proxy-authorization", "cookie"})


class SafeHeaders:
    """Read access to the request headers without the credential headers."""

    __slots__ = ("_headers",)

    def __init__(self, headers: CIMultiDictProxy[str]) -> None:
        self._headers = headers

    def get(self, name: str, default: str | None = None) -> str | None:
        if name.lower() in HIDDEN_HEADERS:
            return default
        return self._headers.get(name, default)


@dataclass(slots=True, eq=False)
class RequestContext:
    """One inference request as it moves through the pipeline."""

    request_id: str
    operation: str
    client_format: str
    key: KeyInfo
    snapshot: Snapshot
    started: float
    peer: str | None = None
    headers: SafeHeaders | None = None
    model: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    byok_provider: str | None = None
    plan: RoutePlan | None = None
    channel: CompiledChannel | None = None
    attempts: int = 0
    status: int = 0
    usage: Usage | None = None
    outcome: str = ""
    notes: dict[str, Any] = field(default_factory=dict)
    #: Extra headers for the answer (e.g. the metering layer's ``x-ratelimit-*``), set by hooks.
    response_headers: dict[str, str] | None = None
    #: SSE events written to the client so far (what a cut stream delivered; metering estimates).
    delivered_events: int = 0
    #: The non-stream answer body as sent (a reference; for estimating usage the upstream omitted).
    response_body: bytes | None = None
    #: The request carries a BYOK key (the key itself is never in the context).
    byok: bool = False
    #: SSE bytes written to the client, kept only when a hook puts a list here (the audit log's
    #: completion text with ``audit.logPromptContent``); None = not kept.
    capture: list[bytes] | None = None


class AdmissionCheck(Protocol):
    """Awaited by the proxy: a coroutine function, or a function returning an awaitable."""

    def __call__(self, ctx: RequestContext) -> Awaitable[None]: ...


class ChannelFilter(Protocol):
    def __call__(self, ctx: RequestContext, channel: CompiledChannel) -> GatewayError | None: ...


class Meter(Protocol):
    async def authorize(self, ctx: RequestContext, channel: CompiledChannel) -> object: ...

    async def settle(self, ctx: RequestContext, hold: object, usage: Usage | None, outcome: str) -> None: ...


class FinishObserver(Protocol):
    async def __call__(self, ctx: RequestContext) -> None: ...


#: Whether a hook has anything to do for requests served from a snapshot (pure; see Hooks.when).
HookCondition = Callable[[Snapshot], bool]


@dataclass
class Hooks:
    """The installed hooks; empty by default (the pass-through gateway)."""

    admission: list[AdmissionCheck] = field(default_factory=list)
    channel_filters: list[ChannelFilter] = field(default_factory=list)
    meter: Meter | None = None
    finish: list[FinishObserver] = field(default_factory=list)
    #: Conditions of the hooks installed with :meth:`when`, keyed by the hook.
    conditions: dict[object, HookCondition] = field(default_factory=dict)

    def when(self, hook: object, condition: HookCondition) -> None:
        """Run ``hook`` (already in one of the lists) only for snapshots where ``condition`` holds.

        The condition must depend on the snapshot alone, and hold whenever the hook could do
        anything, including raise an error (a condition that raises counts as holding)."""
        self.conditions[hook] = condition

    def copy(self) -> Hooks:
        """The same hooks in new lists (add to them without touching these)."""
        return Hooks(list(self.admission), list(self.channel_filters), self.meter, list(self.finish),
                     dict(self.conditions))

    def active(self, snapshot: Snapshot) -> Hooks:
        """The hooks that apply to requests on ``snapshot`` (call once per snapshot, not per request)."""
        if not self.conditions:
            return self

        def applies(hook: object) -> bool:
            condition = self.conditions.get(hook)
            if condition is None:
                return True
            try:
                return bool(condition(snapshot))
            except Exception:  # the hook itself will report the problem, per request
                return True

        return Hooks([h for h in self.admission if applies(h)], [f for f in self.channel_filters if applies(f)],
                     self.meter, [o for o in self.finish if applies(o)])
