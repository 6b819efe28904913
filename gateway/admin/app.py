"""The admin API application, served on its own listener (``--admin-host``/``--admin-port``) only.

Every request under ``/api/v1/admin/`` needs ``Authorization: Bearer <admin token>`` (compared in
constant time); anything else on this listener is 404. Errors are OpenAI-shaped; store errors
map to 404/409/503 (docs/admin-api.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from newapi_gateway.errors import GatewayError
from newapi_gateway.store import Conflict, NotFound, Store, StoreUnavailable

from .auth import AdminToken
from .handlers import AdminHandlers
from .keymeta import KeyMeta
from .routes import BASE, ROUTES, AdminExtension

log = logging.getLogger("newapi_gateway.admin")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HANDLERS_KEY = web.AppKey("admin_handlers", AdminHandlers)


def _error(err: GatewayError) -> web.Response:
    headers = {"Content-Type": "application/json", **(err.headers or {})}
    return web.Response(body=err.body_bytes("openai"), status=err.status, headers=headers)


def _guard(token: AdminToken) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not (request.path == BASE or request.path.startswith(BASE + "/")):
            return _error(GatewayError(404, f"Unknown request URL: {request.method} {request.path}. The admin "
                                            f"API is under {BASE}/.", code="unknown_url"))
        if not token.check(request.headers.get("Authorization")):
            err = GatewayError(401, "The admin API needs Authorization: Bearer <admin token>; the token given is "
                                    "missing or wrong.", code="invalid_admin_token",
                               headers={"WWW-Authenticate": 'Bearer realm="newapi-admin"'})
            return _error(err)
        try:
            return await handler(request)
        except GatewayError as err:
            return _error(err)
        except web.HTTPNotFound:
            return _error(GatewayError(404, f"Unknown request URL: {request.method} {request.path}.",
                                       code="unknown_url"))
        except web.HTTPMethodNotAllowed as exc:
            return _error(GatewayError(405, f"{request.method} is not allowed on {request.path}; allowed: "
                                            f"{', '.join(sorted(exc.allowed_methods))}.", code="method_not_allowed"))
        except StoreUnavailable as exc:
            log.warning("admin request failed: %s", exc)
            return _error(GatewayError(503, f"The state store is unreachable ({exc.backend}); retry shortly.",
                                       type="server_error", code="store_unavailable", headers={"Retry-After": "1"}))
        except NotFound as exc:
            return _error(GatewayError(404, str(exc), code="not_found"))
        except Conflict as exc:
            return _error(GatewayError(409, str(exc), code="conflict"))
        except (ValueError, TypeError) as exc:
            return _error(GatewayError(400, str(exc), code="invalid_value"))

    return guard


def build_admin_app(
    store: Store, token: AdminToken, meta: KeyMeta, extensions: Sequence[AdminExtension] = ()
) -> web.Application:
    """The admin application: :data:`~newapi_gateway.admin.routes.ROUTES` and ``extensions``
    behind the token guard."""
    handlers = AdminHandlers(store, meta, tuple(extensions))
    app = web.Application(middlewares=[_guard(token)], client_max_size=1024 * 1024,
                          handler_args={"access_log": None})
    for route in ROUTES:
        app.router.add_route(route.method, route.full_path, getattr(handlers, route.handler))
    for ext in extensions:
        for route in ext.routes:
            if route.handler not in ext.handlers:
                raise ValueError(f"admin extension route {route.method} {route.path}: no handler {route.handler!r}")
            app.router.add_route(route.method, route.full_path, ext.handlers[route.handler])
    app[HANDLERS_KEY] = handlers
    return app
