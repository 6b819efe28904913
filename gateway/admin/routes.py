"""The admin API's routes, declared once: the router and the OpenAPI document are both built from
:data:`ROUTES` (plus any :class:`AdminExtension`), so a served route cannot be missing from the
document (and the tests check the served router against the document)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BASE = "/api/v1/admin"


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" or "query"
    description: str
    schema: dict[str, object] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: str
    summary: str
    #: status -> component schema name (None: no body)
    responses: dict[int, str | None]
    request: str | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = (400, 401, 404, 503)
    media: str = "application/json"

    @property
    def full_path(self) -> str:
        return BASE + self.path


@dataclass(frozen=True)
class AdminExtension:
    """More admin routes from another part of the gateway (e.g. issue 7's compliance endpoints):
    served on the admin listener behind the same token guard and listed in the OpenAPI document.

    ``handlers`` maps each route's ``handler`` name to its function; ``schemas`` adds component
    schemas the routes refer to (by name, like the built-in ones)."""

    routes: tuple[Route, ...]
    handlers: Mapping[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]
    schemas: Mapping[str, Any] = field(default_factory=dict)


EXTERNAL_ID = Param("externalId", "path", "The portal's user id (the customer's externalId).", required=True)
KEY_ID = Param("keyId", "path", "A key id as returned by this API (key_<n>).", required=True)

ROUTES: tuple[Route, ...] = (
    Route("PUT", "/customers/{externalId}", "put_customer", "Create or update a customer",
          {200: "Customer"}, "CustomerPut", (EXTERNAL_ID,), (400, 401, 503)),
    Route("GET", "/customers/{externalId}", "get_customer", "A customer with its balance",
          {200: "CustomerWithBalance"}, None, (EXTERNAL_ID,)),
    Route("POST", "/users", "create_user", "One-call signup: customer, key and credit grant",
          {201: "UserCreated", 200: "UserCreated"}, "UserCreate", (), (400, 401, 409, 503)),
    Route("POST", "/customers/{externalId}/keys", "create_key", "Issue a key (caller-generated hash or new key)",
          {201: "Key", 200: "Key"}, "KeyCreate", (EXTERNAL_ID,), (400, 401, 404, 409, 503)),
    Route("GET", "/keys/{keyId}", "get_key", "A key record", {200: "Key"}, None, (KEY_ID,)),
    Route("PATCH", "/keys/{keyId}", "patch_key", "Change a key's tier, limits, caps, models, expiry or label",
          {200: "Key"}, "KeyPatch", (KEY_ID,)),
    Route("POST", "/keys/{keyId}/suspend", "suspend_key", "Suspend a key (reversible)",
          {200: "Key"}, None, (KEY_ID,), (401, 404, 409, 503)),
    Route("POST", "/keys/{keyId}/resume", "resume_key", "Resume a suspended key",
          {200: "Key"}, None, (KEY_ID,), (401, 404, 409, 503)),
    Route("POST", "/keys/{keyId}/revoke", "revoke_key", "Revoke a key (final; idempotent)",
          {200: "Key"}, None, (KEY_ID,), (401, 404, 503)),
    Route("POST", "/keys/{keyId}/rotate", "rotate_key", "Issue a new key with the same settings, revoke this one",
          {201: "Key"}, "KeyRotate", (KEY_ID,), (400, 401, 404, 409, 503)),
    Route("POST", "/customers/{externalId}/credits", "add_credits", "Top up (amount > 0) or adjust (< 0)",
          {201: "LedgerEntry", 200: "LedgerEntry"}, "CreditCreate", (EXTERNAL_ID,), (400, 401, 404, 409, 503)),
    Route("GET", "/customers/{externalId}/balance", "get_balance", "Balance, holds, spending and requests today",
          {200: "Balance"}, None, (EXTERNAL_ID,)),
    Route("GET", "/customers/{externalId}/ledger", "get_ledger", "Ledger entries, newest first",
          {200: "LedgerPage"}, None, (
              EXTERNAL_ID,
              Param("limit", "query", "Entries per page (1-1000, default 100).",
                    {"type": "integer", "minimum": 1, "maximum": 1000}),
              Param("cursor", "query", "nextCursor of the previous page."),
          )),
    Route("GET", "/keys/{keyId}/usage", "get_usage", "Usage per UTC day per model, from the rollups",
          {200: "UsagePage"}, None, (
              KEY_ID,
              Param("from", "query", "First day (YYYY-MM-DD, default: the first of this month).",
                    {"type": "string", "format": "date"}),
              Param("to", "query", "Last day, inclusive (YYYY-MM-DD, default: today).",
                    {"type": "string", "format": "date"}),
          )),
    Route("GET", "/audit", "query_audit", "Audit events (one per request), oldest first",
          {200: "AuditPage"}, None, (
              Param("since", "query", "From (RFC 3339, inclusive).", {"type": "string", "format": "date-time"},
                    required=True),
              Param("until", "query", "Until (RFC 3339, exclusive).", {"type": "string", "format": "date-time"},
                    required=True),
              Param("externalId", "query", "Only this customer's events."),
              Param("limit", "query", "Events per page (1-10000, default 100).",
                    {"type": "integer", "minimum": 1, "maximum": 10000}),
              Param("cursor", "query", "nextCursor of the previous page."),
          )),
    Route("GET", "/audit/export", "export_audit", "Audit events as JSON lines (streamed)",
          {200: "AuditEvent"}, None, (
              Param("since", "query", "From (RFC 3339, inclusive).", {"type": "string", "format": "date-time"},
                    required=True),
              Param("until", "query", "Until (RFC 3339, exclusive).", {"type": "string", "format": "date-time"},
                    required=True),
              Param("externalId", "query", "Only this customer's events."),
          ), media="application/x-ndjson"),
    Route("GET", "/openapi.json", "openapi", "This document", {200: None}, None, (), (401,)),
)
