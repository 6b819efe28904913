"""The aiohttp application: routes, and the small endpoints (health, readiness, metrics, models)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from . import jsonutil
from .errors import GatewayError, invalid_key, missing_key
from .proxy import Proxy, extract_key
from .routing import models_for

#: Upper bound aiohttp enforces on chunked bodies; the routing table's limit is checked first.
CLIENT_MAX_SIZE = 64 * 1024 * 1024
_CREATED = int(time.time())
#: The application's :class:`Proxy` (for embedding code and tests).
PROXY_KEY = web.AppKey("proxy", Proxy)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Extra readiness detail (e.g. the metering store's health): ``{"status": "ok" | "degraded", ...}``.
Readiness = Callable[[], Awaitable[dict[str, Any]]]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=jsonutil.dumps(body), status=status, headers={"Content-Type": "application/json"})


def build_app(
    proxy: Proxy, extra_routes: Sequence[tuple[str, str, Handler]] = (), readiness: Readiness | None = None
) -> web.Application:
    """The gateway's aiohttp application for ``proxy`` (its state, key resolver and upstream client).

    ``extra_routes`` are ``(method, path, handler)`` added before the catch-all (e.g. ``GET /quota``);
    ``readiness`` adds a ``state`` section to ``/readyz`` — a degraded state keeps the answer 200 (the
    gateway still answers every request, with clear 503s where the state is missing) but says so.
    """
    state = proxy.state

    async def chat(request: web.Request) -> web.StreamResponse:
        return await proxy.handle(request, "openai", "chat")

    async def completions(request: web.Request) -> web.StreamResponse:
        return await proxy.handle(request, "openai", "completions")

    async def embeddings(request: web.Request) -> web.StreamResponse:
        return await proxy.handle(request, "openai", "embeddings")

    async def messages(request: web.Request) -> web.StreamResponse:
        return await proxy.handle(request, "anthropic", "messages")

    async def models(request: web.Request) -> web.Response:
        anthropic = "anthropic-version" in request.headers
        client_format = "anthropic" if anthropic else "openai"
        snap = state.snapshot
        try:
            api_key = extract_key(request, allow_x_api_key=True)
            if api_key is None:
                raise missing_key()
            key = await proxy.keys.resolve(api_key)
            if key is None:
                raise invalid_key()
            if snap is None:
                raise GatewayError(503, "The gateway has no routing table loaded yet.", "server_error", "not_ready")
        except GatewayError as err:
            return web.Response(body=err.body_bytes(client_format), status=err.status,
                                headers={"Content-Type": "application/json"})
        names = models_for(snap, key)
        if anthropic:
            data = [{"type": "model", "id": m, "display_name": m, "created_at": "1970-01-01T00:00:00Z"} for m in names]
            return _json({"data": data, "has_more": False, "first_id": names[0] if names else None,
                          "last_id": names[-1] if names else None})
        return _json({"object": "list",
                      "data": [{"id": m, "object": "model", "created": _CREATED, "owned_by": "newapi"} for m in names]})

    async def healthz(request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        snap = state.snapshot
        if snap is None:
            return _json({"status": "not ready", "reason": "no routing table loaded"}, 503)
        body: dict[str, Any] = {"status": "ready", "routingTableVersion": snap.version,
                                "instance": snap.table.instance, "channels": len(snap.channels),
                                "unusableChannels": dict(snap.unusable)}
        if readiness is not None:
            detail = await readiness()
            body["state"] = detail
            if detail.get("status") != "ok":
                body["status"] = "degraded"
        return _json(body)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=state.metrics.render(), headers={"Content-Type": state.metrics.CONTENT_TYPE})

    async def not_found(request: web.Request) -> web.Response:
        err = GatewayError(404, f"Unknown request URL: {request.method} {request.path}.", code="unknown_url")
        return web.Response(body=err.body_bytes("openai"), status=404, headers={"Content-Type": "application/json"})

    app = web.Application(client_max_size=CLIENT_MAX_SIZE, handler_args={"access_log": None})
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    for method, path, handler in extra_routes:
        app.router.add_route(method, path, handler)
    app.router.add_route("*", "/{tail:.*}", not_found)
    app[PROXY_KEY] = proxy
    return app
