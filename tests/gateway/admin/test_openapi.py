"""The OpenAPI 3.1 document: every route the admin application serves is in it, and every
operation in it is served; every reference resolves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from newapi_gateway.admin import AdminToken, build_admin_app, document
from newapi_gateway.admin.keymeta import SqliteKeyMeta
from newapi_gateway.store.sqlite import SqliteStore

METHODS = {"get", "put", "post", "patch", "delete"}


def served_routes(tmp: Path) -> set[tuple[str, str]]:
    store = SqliteStore(tmp / "unused.db")  # never opened: only the router is inspected
    app = build_admin_app(store, AdminToken(value="x" * 32), SqliteKeyMeta(str(tmp / "unused.db")))
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if route.method != "HEAD":
            out.add((route.method.lower(), str(path)))
    return out


def test_router_and_document_list_the_same_operations(tmp_path: Path) -> None:
    doc = document()
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops if method in METHODS}
    assert served_routes(tmp_path) == documented
    assert len(documented) == 17


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_document_is_openapi_3_1_and_self_consistent() -> None:
    doc = document("http://admin.example:8081")
    assert doc["openapi"] == "3.1.0"
    assert doc["servers"] == [{"url": "http://admin.example:8081"}]
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref
    operation_ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))
    for path, ops in doc["paths"].items():
        assert path.startswith("/api/v1/admin/")
        for op in ops.values():
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}, path
            assert any(code.startswith("2") for code in op["responses"])
    assert doc["security"] == [{"adminToken": []}]


async def test_extensions_are_guarded_served_and_documented(tmp_path: Path) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from newapi_gateway.admin import AdminExtension, Route

    async def summary(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    ext = AdminExtension(
        routes=(Route("GET", "/compliance", "summary", "Compliance summary", {200: "ComplianceSummary"}, None, (),
                      (401,)),),
        handlers={"summary": summary},
        schemas={"ComplianceSummary": {"type": "object"}},
    )
    token = AdminToken(value="t" * 32)
    app = build_admin_app(SqliteStore(tmp_path / "x.db"), token, SqliteKeyMeta(str(tmp_path / "x.db")), [ext])
    doc = document(extensions=[ext])
    assert "get" in doc["paths"]["/api/v1/admin/compliance"]
    assert "ComplianceSummary" in doc["components"]["schemas"]
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/api/v1/admin/compliance")).status == 401
        ok = await client.get("/api/v1/admin/compliance", headers={"Authorization": "Bearer " + "t" * 32})
        assert (ok.status, await ok.json()) == (200, {"ok": True})
        served = await (await client.get("/api/v1/admin/openapi.json",
                                         headers={"Authorization": "Bearer " + "t" * 32})).json()
        assert "/api/v1/admin/compliance" in served["paths"]
    broken = AdminExtension(routes=ext.routes, handlers={})
    with pytest.raises(ValueError, match="no handler 'summary'"):
        build_admin_app(SqliteStore(tmp_path / "y.db"), token, SqliteKeyMeta(str(tmp_path / "y.db")), [broken])
