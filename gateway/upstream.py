"""The upstream HTTP client: one keep-alive connection pool for the whole process.

Two implementations behind one small interface (:class:`UpstreamResponse`):

* ``lean`` (default): :mod:`newapi_gateway.http1`, a minimal HTTP/1.1 client built for this hot path;
* ``aiohttp``: aiohttp's ``ClientSession`` (``--upstream-client aiohttp``), kept as a fallback.

Both pool connections per origin (scheme, host, port), not per routing table, so a reload never drops
warm connections. Timeouts are per channel (connect, and read: first byte and between chunks).
Responses are not decompressed: the gateway asks for ``identity``.
"""

from __future__ import annotations

import asyncio
from typing import Literal, Protocol

import aiohttp

from .http1 import Http1Pool, UpstreamError

#: Exceptions that mean "this attempt failed at the transport level" (connect, reset, timeout).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (UpstreamError, aiohttp.ClientError, asyncio.TimeoutError, OSError)

ClientKind = Literal["lean", "aiohttp"]


def transport_reason(exc: BaseException) -> str:
    """A short reason label (metrics, logs) for a transport error; never includes request data."""
    if isinstance(exc, UpstreamError):
        return exc.reason
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError):
        return "connect"
    return "transport"


class UpstreamResponse(Protocol):
    status: int

    async def read(self) -> bytes: ...

    async def readany(self) -> bytes: ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class _AiohttpResponse:
    __slots__ = ("_resp", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status

    async def read(self) -> bytes:
        return await self._resp.read()

    async def readany(self) -> bytes:
        return await self._resp.content.readany()

    def release(self) -> None:
        self._resp.release()

    def close(self) -> None:
        self._resp.close()


class UpstreamClient:
    """The process-wide upstream client (``start`` before use, ``close`` at exit)."""

    def __init__(self, kind: ClientKind = "lean", limit: int = 4096, keepalive_timeout: float = 60.0) -> None:
        self.kind = kind
        self._limit = limit
        self._keepalive = keepalive_timeout
        self._session: aiohttp.ClientSession | None = None
        self._pool: Http1Pool | None = None
        self._timeouts: dict[tuple[float, float], aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        if self.kind == "lean":
            self._pool = Http1Pool(max_idle_per_origin=self._limit, idle_timeout=self._keepalive)
            return
        connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=0, keepalive_timeout=self._keepalive,
                                         ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept"),
            headers={"Accept-Encoding": "identity"},
            timeout=aiohttp.ClientTimeout(total=None),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _timeout(self, connect: float, read: float) -> aiohttp.ClientTimeout:
        key = (connect, read)
        t = self._timeouts.get(key)
        if t is None:
            t = self._timeouts[key] = aiohttp.ClientTimeout(total=None, connect=connect, sock_read=read)
        return t

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], connect: float, read: float
    ) -> UpstreamResponse:
        """POST ``body``; returns once the response head arrived. The caller reads and releases it."""
        if self._pool is not None:
            headers["Accept-Encoding"] = "identity"
            return await self._pool.request("POST", url, headers, body, connect, read)
        assert self._session is not None, "UpstreamClient.start() was not called"
        resp = await self._session.post(url, data=body, headers=headers, timeout=self._timeout(connect, read),
                                        allow_redirects=False)
        return _AiohttpResponse(resp)
