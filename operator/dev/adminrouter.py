"""One address at which the operator reaches every local gateway's admin API.

In a cluster the operator calls ``http://<instance>.<namespace>.svc:8081``. Locally each gateway
process has its own admin port, so the operator is started with
``--admin-url http://127.0.0.1:<router>/{namespace}/{name}`` and this small proxy forwards
``/<namespace>/<name>/<path>`` to that instance's gateway (503 while it has none, which the
operator treats as "retry later", as it would an unready Service).
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp import web

#: Request headers passed on (the admin API needs the token and the body type).
FORWARDED = ("Authorization", "Content-Type", "Accept", "Idempotency-Key")
PortOf = Callable[[str, str], "int | None"]


class AdminRouter:
    """``/{namespace}/{name}/{path}`` -> ``http://127.0.0.1:<admin port of that instance>/{path}``."""

    def __init__(self, port_of: PortOf, host: str = "127.0.0.1") -> None:
        self.port_of = port_of
        self.host = host
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    def url_template(self) -> str:
        """The operator's ``--admin-url``."""
        return f"http://{self.host}:{self.port}/{{namespace}}/{{name}}"

    async def _forward(self, request: web.Request) -> web.Response:
        namespace, name, path = request.match_info["ns"], request.match_info["name"], request.match_info["path"]
        port = self.port_of(namespace, name)
        if port is None:
            text = f"no local gateway runs for NewAPIInstance {namespace}/{name} yet"
            return web.json_response({"error": {"message": text, "type": "server_error", "code": "no_gateway"}},
                                     status=503)
        assert self._session is not None
        headers = {h: request.headers[h] for h in FORWARDED if h in request.headers}
        url = f"http://{self.host}:{port}/{path}"
        try:
            async with self._session.request(request.method, url, params=request.query, headers=headers,
                                             data=await request.read()) as rsp:
                body = await rsp.read()
                return web.Response(body=body, status=rsp.status,
                                    headers={"Content-Type": rsp.headers.get("Content-Type", "application/json")})
        except aiohttp.ClientError as exc:
            return web.json_response({"error": {"message": f"gateway {namespace}/{name} admin API: {exc}",
                                                "type": "server_error", "code": "gateway_unreachable"}}, status=503)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{ns}/{name}/{path:.*}", self._forward)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
