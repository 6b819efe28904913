"""The admin API's compliance endpoints (served on the admin listener, behind the admin token).

* ``GET /api/v1/admin/compliance``: the compliance summary of the routing table in force
  (:mod:`.summary`), with the disclosure page's status.
* ``POST /api/v1/admin/compliance/retention-probe`` ``{"marker": "sk-probe-...", "since": "<RFC 3339>"}``:
  search the database and Redis for a probe marker (:mod:`.retention_probe`); one probe at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import jsonutil
from ..admin.routes import AdminExtension, Route
from ..errors import GatewayError
from ..snapshot import Snapshot
from .retention_probe import InvalidMarker, check_marker, search
from .summary import compliance_summary

if TYPE_CHECKING:
    from .pipeline import ComplianceHooks

log = logging.getLogger("newapi_gateway.compliance")


@dataclass(frozen=True)
class ProbeTargets:
    """The stores the retention probe searches (those of this gateway)."""

    dsn: str | None = None
    sqlite_path: str | None = None
    redis_url: str | None = None


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=jsonutil.dumps(body), status=status, headers={"Content-Type": "application/json"})


def _invalid(param: str, message: str) -> GatewayError:
    return GatewayError(400, f"{param}: {message}", code="invalid_value", param=param)


class ComplianceAdmin:
    """Handlers of the compliance endpoints."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot | None],
        compliance: ComplianceHooks | None,
        targets: ProbeTargets,
        geoip_database: str | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.compliance = compliance
        self.targets = targets
        self.geoip_database = geoip_database
        self._probe_lock = asyncio.Lock()

    async def get_compliance(self, request: web.Request) -> web.Response:
        snap = self.snapshot()
        if snap is None:
            raise GatewayError(503, "The gateway has no routing table loaded yet.", "server_error", "not_ready")
        status: int | None = None
        if self.compliance is not None:
            try:
                status = self.compliance.disclosure_page(snap.table).status
            except GatewayError:
                status = 503
        return _json(compliance_summary(snap.table, snap.unusable, status, self.geoip_database))

    async def retention_probe(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = jsonutil.loads(raw) if raw else {}
        except jsonutil.DecodeError:
            raise GatewayError(400, "The request body is not valid JSON.", code="invalid_json") from None
        if not isinstance(body, dict):
            raise GatewayError(400, "The request body must be a JSON object.", code="invalid_json")
        unknown = set(body) - {"marker", "since"}
        if unknown:
            raise _invalid(sorted(unknown)[0], "unknown field; the probe takes marker and since")
        try:
            marker = check_marker(body.get("marker"))
        except InvalidMarker as exc:
            raise GatewayError(400, str(exc), code="invalid_value", param="marker") from None
        since = None
        if body.get("since") is not None:
            from ..admin.schemas import parse_time

            since = parse_time(body["since"], "since")
        t = self.targets
        async with self._probe_lock:
            report = await search(marker, dsn=t.dsn, sqlite_path=t.sqlite_path, redis_url=t.redis_url, since=since)
        if report.found:
            log.error("retention probe: the probe marker was found in the stores",
                      extra={"hits": [h.to_json() for h in report.hits]})
        return _json(report.to_json())


# -- the admin API extension -----------------------------------------------------------------------

_STR = {"type": "string"}
_NULL_STR = {"type": ["string", "null"]}


def _obj(props: dict[str, Any], required: tuple[str, ...] = (), extra: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if not extra:
        out["additionalProperties"] = False
    return out


#: Component schemas of the compliance endpoints (OpenAPI 3.1 / JSON Schema).
SCHEMAS: dict[str, Any] = {
    "ComplianceSummary": _obj({
        "object": {"const": "compliance_summary"},
        "instance": _STR,
        "routingTableVersion": _NULL_STR,
        "channels": {"type": "array", "items": _obj({
            "name": _STR, "type": _STR, "commercial": {"type": "boolean"},
            "models": {"type": "array", "items": _STR}, "endpoint": _NULL_STR,
            "routable": {"type": "boolean"}, "unusableReason": _NULL_STR,
            "attestation": _obj({"kind": _STR, "attested": {"type": "boolean"}, "provider": _NULL_STR,
                                 "problem": _NULL_STR}, ("kind", "attested", "provider", "problem")),
            "disclosed": {"type": "boolean"}, "allowedProviders": {"type": "array", "items": _STR},
        }, ("name", "type", "commercial", "attestation"))},
        "commercialProviders": {"type": "array", "items": _STR,
                                "description": "Display names the disclosure page must list."},
        "unattestedChannels": {"type": "array", "items": _STR},
        "policy": _obj({"geo": {"type": "object"}, "aup": {"type": "object"}, "audit": {"type": "object"},
                        "byok": {"type": "object"}, "reseller": {"type": "object"}}, (), True),
        "disclosure": _obj({"path": _STR, "status": {"type": ["integer", "null"]}}),
    }, ("object", "instance", "channels", "commercialProviders", "unattestedChannels", "policy", "disclosure")),
    "RetentionProbeRequest": _obj({
        "marker": {"type": "string", "pattern": "^sk-probe-[A-Za-z0-9_-]{16,128}$",
                   "description": "The made-up BYOK key sent through the gateway."},
        "since": {"type": "string", "format": "date-time",
                  "description": "Read the append-only tables (audit_events, ledger) from this time on."},
    }, ("marker",)),
    "RetentionProbe": _obj({
        "object": {"const": "retention_probe"},
        "found": {"type": "boolean"},
        "hits": {"type": "array", "items": _obj({
            "store": {"enum": ["database", "redis"]}, "where": _STR,
            "form": {"enum": ["raw", "sha256-hex", "sha256"]}, "count": {"type": "integer"},
        }, ("store", "where", "form", "count"))},
        "scanned": {"type": "object"},
    }, ("object", "found", "hits", "scanned")),
}


#: The compliance routes of the admin API (for the router and the OpenAPI document).
ROUTES: tuple[Route, ...] = (
    Route("GET", "/compliance", "get_compliance",
          "Compliance summary of the routing table in force (attestation, policy, disclosure)",
          {200: "ComplianceSummary"}, None, (), (401, 503)),
    Route("POST", "/compliance/retention-probe", "retention_probe",
          "Search the database and Redis for a BYOK probe marker (compliance-check)",
          {200: "RetentionProbe"}, "RetentionProbeRequest", (), (400, 401, 503)),
)


def admin_extension(handlers: ComplianceAdmin) -> AdminExtension:
    """The compliance endpoints as an admin API extension (router and OpenAPI document)."""
    return AdminExtension(ROUTES, {"get_compliance": handlers.get_compliance,
                                   "retention_probe": handlers.retention_probe}, SCHEMAS)
