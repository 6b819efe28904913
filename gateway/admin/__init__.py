"""The gateway's admin API (docs/admin-api.md): customers, keys, credit, usage, on the admin listener."""

from __future__ import annotations

from newapi_gateway.admin.app import build_admin_app
from newapi_gateway.admin.auth import AdminToken, AdminTokenError, token_from
from newapi_gateway.admin.keymeta import KeyMeta, key_meta_for
from newapi_gateway.admin.openapi import document
from newapi_gateway.admin.routes import AdminExtension, Param, Route

__all__ = [
    "AdminExtension",
    "AdminToken",
    "AdminTokenError",
    "KeyMeta",
    "Param",
    "Route",
    "build_admin_app",
    "document",
    "key_meta_for",
    "token_from",
]
