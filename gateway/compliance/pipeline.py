"""The compliance checks as hooks of the gateway's request pipeline (:mod:`newapi_gateway.hooks`).

Wiring (see docs/compliance.md, "Wiring")::

    compliance = ComplianceHooks(load_policy_library())
    compliance.install(hooks)               # admission: AUP provider-strictest; filter: geo + AUP per-channel
    ...
    compliance.precompile(table)            # on every table load; ComplianceConfigError = reject the table
    build_app(proxy, extra_routes=[compliance.disclosure_route(lambda: state.snapshot and state.snapshot.table)])

* :meth:`ComplianceHooks.admission` runs before routing: with ``provider-strictest`` it checks the
  request text once; a block raises the 400 ``content_policy_violation`` (no upstream, no hold).
* :meth:`ComplianceHooks.channel_filter` runs per candidate channel, before the meter's hold:
  geo first (451 ``unavailable_for_legal_reasons``), then, with ``per-channel``, the channel's AUP.
  The location is resolved once per request.

Decisions are left in ``ctx.notes`` for the audit row (:func:`audit_fields`); the request text is
never stored there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..errors import GatewayError
from ..routing_table import RoutingTable
from .aup import AupMatcher, AupVerdict
from .aup_policy import PolicyLibrary
from .disclosure import PATH as DISCLOSURE_PATH
from .disclosure import Disclosure
from .errors import aup_error, geo_error
from .extract import request_text
from .geo import DEFAULT_REGION_HEADERS, UNKNOWN, CountryLookup, GeoDecision, Location, decide
from .geoip import open_geoip_database
from .plan import CompliancePlan, compile_plan
from .problems import ComplianceConfigError

if TYPE_CHECKING:
    from ..hooks import Hooks, RequestContext
    from ..snapshot import CompiledChannel, Snapshot

log = logging.getLogger(__name__)

#: ``ctx.notes`` keys written by the checks.
NOTE_LOCATION = "compliance.location"  # Location
NOTE_GEO = "compliance.geo"  # GeoDecision that refused a channel (absent: no refusal)
NOTE_AUP = "compliance.aup"  # AupVerdict of the last check (absent: no check ran)

_PLANS_KEPT = 4
#: Headers of the disclosure page: cacheable for a few minutes, varies with Accept, no active content.
DISCLOSURE_HEADERS = {
    "Cache-Control": "public, max-age=300",
    "Vary": "Accept",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ComplianceHooks:
    """Geo blocking, AUP enforcement and the disclosure page, with one compiled plan per routing table."""

    def __init__(
        self,
        library: PolicyLibrary,
        region_headers: Iterable[str] = DEFAULT_REGION_HEADERS,
        geoip_database: str | None = None,
    ) -> None:
        self.library = library
        self.region_headers = tuple(region_headers)
        #: GeoIP database used when a routing table names none (``newapi gateway --geoip-db``).
        self.geoip_database = geoip_database
        self._plans: list[tuple[RoutingTable, CompliancePlan | ComplianceConfigError]] = []
        self._databases: dict[str, tuple[tuple[int, int, int], CountryLookup]] = {}
        self._text_for: tuple[object, str] | None = None

    # -- plans -------------------------------------------------------------------------------------

    def _open_database(self, path: str) -> CountryLookup:
        """Open a GeoIP database, reusing the reader while the file is unchanged (inode, mtime and size)."""
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = (0, 0, 0)
        cached = self._databases.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        database = open_geoip_database(path)
        self._databases[path] = (stamp, database)
        return database

    def _compile(self, table: RoutingTable) -> CompliancePlan | ComplianceConfigError:
        try:
            result: CompliancePlan | ComplianceConfigError = compile_plan(
                table, self.library, self._open_database, self.region_headers, self.geoip_database
            )
        except ComplianceConfigError as err:
            result = err
        self._plans.insert(0, (table, result))
        del self._plans[_PLANS_KEPT:]
        return result

    def precompile(self, table: RoutingTable) -> CompliancePlan:
        """Compile (or reuse) the plan of ``table``. Call it on every table load: a
        :class:`ComplianceConfigError` means the table must be refused like an invalid one."""
        result = self._lookup(table)
        if isinstance(result, ComplianceConfigError):
            raise result
        return result

    def _lookup(self, table: RoutingTable) -> CompliancePlan | ComplianceConfigError:
        for known, result in self._plans:
            if known is table:
                return result
        return self._compile(table)

    def plan_for(self, table: RoutingTable) -> CompliancePlan:
        """The plan of ``table`` on the request path; an uncompilable table answers 503 (fail closed)."""
        plans = self._plans
        result = plans[0][1] if plans and plans[0][0] is table else self._lookup(table)
        if isinstance(result, ComplianceConfigError):
            log.error("compliance settings of routing table %s are unusable: %s", table.version, result)
            raise GatewayError(
                503, "The service's compliance policy could not be loaded; the operator has been notified.",
                type="server_error", code="compliance_unavailable",
            )
        return result

    # -- hooks -------------------------------------------------------------------------------------

    def install(self, hooks: Hooks) -> None:
        """Add the admission check and the channel filter to ``hooks``, each for the routing tables
        where it has work (a table whose compliance settings do not compile keeps both: the 503)."""
        hooks.admission.append(self.admission)
        hooks.channel_filters.append(self.channel_filter)
        hooks.when(self.admission, self._checks_at_admission)
        hooks.when(self.channel_filter, self._filters_channels)

    def _checks_at_admission(self, snapshot: Snapshot) -> bool:
        """AUP ``provider-strictest`` with policies to check."""
        result = self._lookup(snapshot.table)
        return isinstance(result, ComplianceConfigError) or result.aup.strictest is not None

    def _filters_channels(self, snapshot: Snapshot) -> bool:
        """A channel of ``snapshot`` can be refused, or its request's location goes into the audit row
        (the conditions under which :meth:`channel_filter` does more than return None at once)."""
        result = self._lookup(snapshot.table)
        if isinstance(result, ComplianceConfigError):
            return True
        return any(_decides(result, snapshot.table, ch) for ch in snapshot.channels.values())

    def _text(self, ctx: RequestContext) -> str:
        cached = self._text_for
        if cached is not None and cached[0] is ctx:
            return cached[1]
        text = request_text(ctx.operation, ctx.body)
        self._text_for = (ctx, text)
        return text

    def _check(self, ctx: RequestContext, matcher: AupMatcher) -> AupVerdict:
        verdicts: dict[int, AupVerdict] | None = ctx.notes.get("compliance.aup_by_matcher")
        if verdicts is None:
            verdicts = ctx.notes["compliance.aup_by_matcher"] = {}
        verdict = verdicts.get(id(matcher))
        if verdict is None:
            verdict = verdicts[id(matcher)] = matcher.check(self._text(ctx))
        return verdict

    async def admission(self, ctx: RequestContext) -> None:
        """AUP ``provider-strictest``: check once before routing; raise the 400 on a block."""
        plan = self.plan_for(ctx.snapshot.table)
        matcher = plan.aup.strictest
        if matcher is None:
            return
        verdict = matcher.check(request_text(ctx.operation, ctx.body))
        ctx.notes[NOTE_AUP] = verdict
        if verdict.blocked:
            raise aup_error(verdict)

    def channel_filter(self, ctx: RequestContext, channel: CompiledChannel) -> GatewayError | None:
        """Geo (451), then AUP ``per-channel`` (400), for one candidate channel."""
        table = ctx.snapshot.table
        plan = self.plan_for(table)
        location: Location | None = ctx.notes.get(NOTE_LOCATION)
        if location is None:
            if not _decides(plan, table, channel):
                return None  # nothing to decide and no audit row to record the location in
            location = ctx.notes[NOTE_LOCATION] = plan.resolver.resolve(ctx.peer, ctx.headers)
        decision = decide(plan.geo, location, channel)
        if not decision.allowed:
            ctx.notes[NOTE_GEO] = decision
            return geo_error(decision)
        if plan.aup.enforcement == "per-channel":
            matcher = plan.aup.for_channel(channel.name, ctx.byok_provider)
            if matcher is not None and not matcher.empty:
                verdict = self._check(ctx, matcher)
                ctx.notes[NOTE_AUP] = verdict
                if verdict.blocked:
                    return aup_error(verdict)
        return None

    # -- disclosure --------------------------------------------------------------------------------

    def disclosure_page(self, table: RoutingTable) -> Disclosure:
        return self.plan_for(table).disclosure

    def disclosure(self, table: RoutingTable, accept: str | None) -> tuple[int, str, bytes]:
        """``GET /legal/llm-providers``: ``(status, content type, body)`` for the ``Accept`` header."""
        return self.plan_for(table).disclosure.render(accept)

    def disclosure_route(self, current_table: Callable[[], RoutingTable | None]) -> tuple[str, str, Handler]:
        """``(method, path, handler)`` of the public disclosure page, for ``build_app(extra_routes=...)``;
        ``current_table`` returns the table in force (``state.snapshot.table``) or None before the first load."""

        async def legal_llm_providers(request: web.Request) -> web.StreamResponse:
            table = current_table()
            try:
                if table is None:
                    raise GatewayError(503, "The gateway has no routing table loaded yet.", "server_error", "not_ready")
                status, ctype, body = self.disclosure(table, request.headers.get("Accept"))
            except GatewayError as err:
                return web.Response(body=err.body_bytes("openai"), status=err.status,
                                    headers={"Content-Type": "application/json", "Cache-Control": "no-store"})
            return web.Response(body=body, status=status, headers={"Content-Type": ctype, **DISCLOSURE_HEADERS})

        return "GET", DISCLOSURE_PATH, legal_llm_providers


def audit_fields(notes: dict[str, Any]) -> dict[str, str | None]:
    """The compliance columns of an audit row from ``ctx.notes``: country, subdivision, where the
    location came from, and the geo and AUP decisions (``allow``, ``block:IR``, ``flag:self-harm-intent``,
    ``block:mass-casualty-weapons@openai``; None when the check did not run)."""
    location: Location = notes.get(NOTE_LOCATION, UNKNOWN)
    geo: GeoDecision | None = notes.get(NOTE_GEO)
    aup: AupVerdict | None = notes.get(NOTE_AUP)
    return {
        "country": location.country,
        "subdivision": location.subdivision,
        "geoSource": location.source if NOTE_LOCATION in notes else None,
        "geo": geo.label if geo is not None else ("allow" if NOTE_LOCATION in notes else None),
        "aup": aup.label if aup is not None else None,
    }


def _decides(plan: CompliancePlan, table: RoutingTable, channel: CompiledChannel) -> bool:
    """The channel filter has work for ``channel``: geo applies to it (commercial, or in-cluster with
    ``applyToInCluster``), AUP is checked per channel, or the audit row records the location."""
    return (channel.commercial or plan.geo.apply_to_in_cluster or plan.aup.enforcement == "per-channel"
            or table.policy.audit.enabled)
