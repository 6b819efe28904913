"""The admin API's OpenAPI 3.1 document, built from :data:`~newapi_gateway.admin.routes.ROUTES` (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .routes import ROUTES, AdminExtension, Route

MONEY = {"type": "integer", "format": "int64", "description": "Micro-credits (1 credit = 1,000,000)."}
NULLABLE_MONEY = {"type": ["integer", "null"], "format": "int64", "description": "Micro-credits; null = none."}
TIME = {"type": ["string", "null"], "format": "date-time"}


def _obj(props: dict[str, Any], required: tuple[str, ...] = (), extra: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if not extra:
        out["additionalProperties"] = False
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


RATE_LIMIT = _obj({"rpm": {"type": ["integer", "null"], "minimum": 1}, "tpm": {"type": ["integer", "null"],
                                                                              "minimum": 1}})
SPENDING_CAP = _obj({"daily": NULLABLE_MONEY, "monthly": NULLABLE_MONEY})
KEY_SETTINGS: dict[str, Any] = {
    "tier": {"type": "string", "minLength": 1},
    "rateLimit": {"oneOf": [RATE_LIMIT, {"type": "null"}]},
    "spendingCap": {"oneOf": [SPENDING_CAP, {"type": "null"}]},
    "allowedModels": {"type": ["array", "null"], "items": {"type": "string"}},
    "expiresAt": TIME,
    "label": {"type": ["string", "null"], "maxLength": 200},
}

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _obj({
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]},
    }, ("message", "type", "param", "code"))}, ("error",)),
    "CustomerPut": _obj({"displayName": {"type": ["string", "null"], "maxLength": 200}}),
    "Customer": _obj({"externalId": {"type": "string"}, "displayName": {"type": ["string", "null"]},
                      "createdAt": {"type": "string", "format": "date-time"}},
                     ("externalId", "displayName", "createdAt")),
    "Balance": _obj({"balance": MONEY, "held": MONEY, "available": MONEY, "spentToday": MONEY,
                     "spentThisMonth": MONEY, "requestsToday": {"type": "integer"}},
                    ("balance", "held", "available", "spentToday", "spentThisMonth", "requestsToday")),
    "CustomerWithBalance": {"allOf": [_ref("Customer"), _obj({"balance": _ref("Balance")}, ("balance",), True)]},
    "KeyCreate": _obj({
        "keyHash": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
                    "description": "SHA-256 hex of the key the caller generated; absent: the gateway generates one."},
        "keyPrefix": {"type": "string", "maxLength": 32},
        **KEY_SETTINGS,
    }, ("tier",)),
    "KeyPatch": _obj(KEY_SETTINGS),
    "KeyRotate": _obj({"keyHash": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                       "keyPrefix": {"type": "string", "maxLength": 32}}),
    "Key": _obj({
        "keyId": {"type": "string", "pattern": "^key_[1-9][0-9]*$"},
        "externalId": {"type": "string"},
        "keyPrefix": {"type": "string"},
        "tier": {"type": "string"},
        "status": {"enum": ["active", "suspended", "revoked"]},
        "rateLimit": RATE_LIMIT,
        "spendingCap": SPENDING_CAP,
        "allowedModels": {"type": "array", "items": {"type": "string"}},
        "expiresAt": TIME,
        "label": {"type": ["string", "null"]},
        "key": {"type": "string", "description": "The key itself: only in the answer that generated it."},
    }, ("keyId", "externalId", "keyPrefix", "tier", "status", "rateLimit", "spendingCap", "allowedModels",
        "expiresAt", "label")),
    "UserCreate": _obj({
        "externalId": {"type": "string"}, "displayName": {"type": ["string", "null"]},
        "creditGrant": NULLABLE_MONEY, "idempotencyKey": {"type": "string", "maxLength": 200},
        **{k: v for k, v in KEY_SETTINGS.items()},
    }, ("externalId", "tier", "idempotencyKey")),
    "UserCreated": _obj({"customer": _ref("Customer"), "key": _ref("Key"),
                         "creditGrant": {"oneOf": [_ref("LedgerEntry"), {"type": "null"}]}},
                        ("customer", "key", "creditGrant")),
    "CreditCreate": _obj({"amount": {"type": "integer", "format": "int64", "not": {"const": 0},
                                     "description": "Micro-credits; negative = an adjustment."},
                          "idempotencyKey": {"type": "string", "minLength": 1, "maxLength": 200},
                          "reason": {"type": ["string", "null"], "maxLength": 500}},
                         ("amount", "idempotencyKey")),
    "LedgerEntry": _obj({
        "id": {"type": "integer", "format": "int64"}, "externalId": {"type": "string"},
        "keyId": {"type": ["string", "null"]}, "kind": {"enum": ["top_up", "adjust", "debit"]},
        "amount": {"type": "integer", "format": "int64", "description": "Signed micro-credits."},
        "balanceAfter": {"type": "integer", "format": "int64"}, "idempotencyKey": {"type": "string"},
        "reason": {"type": ["string", "null"]}, "createdAt": {"type": "string", "format": "date-time"},
    }, ("id", "externalId", "keyId", "kind", "amount", "balanceAfter", "idempotencyKey", "reason", "createdAt")),
    "LedgerPage": _obj({"data": {"type": "array", "items": _ref("LedgerEntry")},
                        "nextCursor": {"type": ["string", "null"]}}, ("data", "nextCursor")),
    "UsageRow": _obj({"day": {"type": "string", "format": "date"}, "model": {"type": "string"},
                      "requests": {"type": "integer"}, "inputTokens": {"type": "integer"},
                      "outputTokens": {"type": "integer"}, "cost": MONEY,
                      "estimatedRequests": {"type": "integer",
                                            "description": "Requests billed on estimated usage."}},
                     ("day", "model", "requests", "inputTokens", "outputTokens", "cost")),
    "UsagePage": _obj({"data": {"type": "array", "items": _ref("UsageRow")}}, ("data",)),
    "AuditEvent": _obj({
        "id": {"type": "integer"}, "ts": {"type": "string", "format": "date-time"},
        "requestId": {"type": "string"}, "externalId": {"type": ["string", "null"]},
        "keyId": {"type": ["string", "null"]}, "channel": {"type": ["string", "null"]},
        "model": {"type": ["string", "null"]}, "upstreamModel": {"type": ["string", "null"]},
        "inputTokens": {"type": "integer"}, "outputTokens": {"type": "integer"}, "cost": MONEY,
        "status": {"type": "integer"}, "latencyMs": {"type": "integer"}, "country": {"type": ["string", "null"]},
        "decisions": {"type": "object"}, "prompt": {"type": ["string", "null"]},
        "completion": {"type": ["string", "null"]},
    }, extra=True),
    "AuditPage": _obj({"data": {"type": "array", "items": _ref("AuditEvent")},
                       "nextCursor": {"type": ["string", "null"]}}, ("data", "nextCursor")),
}

ERROR_TEXT = {
    400: "Bad input (the error's param names the field).",
    401: "Missing or wrong admin token.",
    404: "Unknown customer or key.",
    409: "Conflict: idempotency key reused with other values, or a state change that is not allowed.",
    503: "The state store is unreachable; retry.",
}
SUCCESS_TEXT = {200: "OK", 201: "Created"}


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": _camel(route.handler),
        "summary": route.summary,
        "tags": [route.path.split("/")[1]],
    }
    if route.params:
        op["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
             "description": p.description, "schema": p.schema}
            for p in route.params
        ]
    if route.request is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(route.request)}}}
    responses: dict[str, Any] = {}
    for status, schema in route.responses.items():
        entry: dict[str, Any] = {"description": SUCCESS_TEXT.get(status, "OK")}
        if schema is not None:
            entry["content"] = {route.media: {"schema": _ref(schema)}}
        else:
            entry["content"] = {route.media: {"schema": {"type": "object"}}}
        responses[str(status)] = entry
    for status in route.errors:
        responses[str(status)] = {"description": ERROR_TEXT[status],
                                  "content": {"application/json": {"schema": _ref("Error")}}}
    op["responses"] = responses
    return op


def document(server_url: str | None = None, extensions: Sequence[AdminExtension] = ()) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (built-in routes and ``extensions``)."""
    paths: dict[str, dict[str, Any]] = {}
    schemas = dict(SCHEMAS)
    routes = list(ROUTES)
    for ext in extensions:
        routes.extend(ext.routes)
        schemas.update(ext.schemas)
    for route in routes:
        paths.setdefault(route.full_path, {})[route.method.lower()] = _operation(route)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "newapi gateway admin API",
            "version": "1",
            "description": "Customers, keys, credit and usage of one gateway instance (docs/admin-api.md). "
                           "Served only on the admin listener; every request needs the admin bearer token. "
                           "Money is integer micro-credits; times are RFC 3339 UTC.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"adminToken": []}],
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
