"""A lean HTTP/1.1 client for upstream calls: keep-alive pools per origin, one write per request.

Why not aiohttp's client: profiling the pass-through path showed aiohttp's ``ClientSession`` (request
object, tracing signals, cookie and redirect machinery, multidict headers) as the largest single cost
of a proxied request. This client does only what the gateway needs: ``POST`` (or ``GET``) with a body
of bytes, status and headers of the response, the body as it arrives (Content-Length, chunked, or
until close), per-request connect and read timeouts, TLS, and flow control for slow readers.

Connections are pooled per origin ``(scheme, host, port)``, never per routing table, so reloads keep
warm connections. A reused connection that turns out closed before any response byte arrived is
retried once on a fresh connection (the server closed it while idle).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from urllib.parse import urlsplit

_HIGH_WATER = 256 * 1024
_MAX_HEAD = 64 * 1024
# chunked decoding states (``_chunk_left`` >= 1 means payload bytes left in the current chunk)
_SIZE = -1
_CRLF = -2
_TRAILER = -3


class UpstreamError(Exception):
    """Transport-level failure of an upstream request; ``reason`` is connect, timeout or transport."""

    reason = "transport"


class UpstreamConnectError(UpstreamError):
    reason = "connect"


class UpstreamTimeout(UpstreamError):
    reason = "timeout"


class UpstreamProtocolError(UpstreamError):
    reason = "transport"


Origin = tuple[str, str, int]


class _Connection(asyncio.Protocol):
    """One upstream connection and the response being read from it."""

    def __init__(self, pool: Http1Pool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.response: Http1Response | None = None

    # protocol callbacks ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        resp = self.response
        if resp is None:  # bytes while idle: the server is misbehaving; never reuse this connection
            self.close()
            return
        resp._feed(data)

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        resp = self.response
        if resp is not None:
            resp._connection_lost()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Http1Response:
    """An upstream response: ``status``, ``headers`` (lower-case names), then the body via :meth:`readany`
    (decoded chunks, ``b""`` at the end) or :meth:`read` (all of it). Always :meth:`release` it."""

    __slots__ = (
        "_body_mode", "_buf", "_chunk_left", "_conn", "_done", "_error", "_head_done", "_head_waiter",
        "_keep_alive", "_paused", "_pending", "_pending_size", "_read_timeout", "_received_any", "_remaining",
        "_waiter", "headers", "reason", "status",
    )

    def __init__(self, conn: _Connection, read_timeout: float) -> None:
        self._conn = conn
        self._read_timeout = read_timeout
        self._buf = b""
        self._head_done = False
        self._received_any = False
        self._head_waiter: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._paused = False
        self._done = False
        self._error: UpstreamError | None = None
        self._body_mode = ""  # length | chunked | close | none
        self._remaining = 0
        self._chunk_left = _SIZE
        self._keep_alive = True
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}

    # parsing -----------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._received_any = True
        if not self._head_done:
            self._buf += data
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _MAX_HEAD:
                    self._fail(UpstreamProtocolError("upstream response head too large"))
                return
            head, rest = self._buf[:end], self._buf[end + 4:]
            self._buf = b""
            if not self._parse_head(head):
                self._buf = rest  # a 1xx interim response: the real head follows
                if rest:
                    self._feed(b"")
                return
            if self._error is not None:
                return
            self._head_done = True
            _wake(self._head_waiter)
            if rest:
                self._feed_body(rest)
            elif self._body_mode == "none" or (self._body_mode == "length" and self._remaining == 0):
                self._finish()
            return
        self._feed_body(data)

    def _parse_head(self, head: bytes) -> bool:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        try:
            version, status = parts[0], int(parts[1])
        except (IndexError, ValueError):
            self._fail(UpstreamProtocolError("malformed upstream status line"))
            return True
        if 100 <= status < 200:
            return False
        self.status = status
        self.reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        self.headers = headers
        conn_hdr = headers.get("connection", "").lower()
        self._keep_alive = version == b"HTTP/1.1" and "close" not in conn_hdr
        if status in (204, 304):
            self._body_mode = "none"
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._body_mode = "chunked"
        elif "content-length" in headers:
            try:
                self._remaining = int(headers["content-length"])
            except ValueError:
                self._fail(UpstreamProtocolError("malformed upstream Content-Length"))
                return True
            self._body_mode = "length"
        else:
            self._body_mode = "close"
            self._keep_alive = False
        return True

    def _feed_body(self, data: bytes) -> None:
        mode = self._body_mode
        if mode == "length":
            if len(data) >= self._remaining:
                data = data[: self._remaining]
                self._remaining = 0
                self._push(data)
                self._finish()
            else:
                self._remaining -= len(data)
                self._push(data)
        elif mode == "chunked":
            self._feed_chunked(data)
        elif mode == "close":
            self._push(data)
        # mode none: ignore stray bytes

    def _feed_chunked(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        pos = 0
        n = len(buf)
        while pos < n:
            left = self._chunk_left
            if left > 0:  # chunk payload
                take = left if left < n - pos else n - pos
                self._push(buf[pos:pos + take])
                pos += take
                self._chunk_left = left - take if left > take else _CRLF
            elif left == _SIZE:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    self._keep_partial(buf, pos)
                    return
                try:
                    size = int(buf[pos:eol].split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self._fail(UpstreamProtocolError("malformed chunk size from upstream"))
                    return
                pos = eol + 2
                self._chunk_left = size if size > 0 else _TRAILER
            elif left == _CRLF:
                if n - pos < 2:
                    self._keep_partial(buf, pos)
                    return
                if buf[pos:pos + 2] != b"\r\n":
                    self._fail(UpstreamProtocolError("malformed chunk framing from upstream"))
                    return
                pos += 2
                self._chunk_left = _SIZE
            else:  # trailers after the last chunk, up to an empty line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    self._keep_partial(buf, pos)
                    return
                line_empty = eol == pos
                pos = eol + 2
                if line_empty:
                    self._finish()
                    return

    def _keep_partial(self, buf: bytes, pos: int) -> None:
        self._buf = buf[pos:]
        if len(self._buf) > _MAX_HEAD:
            self._fail(UpstreamProtocolError("upstream chunk framing line too long"))

    def _push(self, data: bytes) -> None:
        if not data:
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size > _HIGH_WATER and not self._paused and self._conn.transport is not None:
            self._paused = True
            self._conn.transport.pause_reading()
        _wake(self._waiter)

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            _wake(self._waiter)

    def _fail(self, err: UpstreamError) -> None:
        if self._error is None and not self._done:
            self._error = err
        self._keep_alive = False
        _wake(self._head_waiter)
        _wake(self._waiter)
        self._conn.close()

    def _connection_lost(self) -> None:
        self._keep_alive = False
        if self._head_done and self._body_mode == "close":
            self._finish()
        elif not self._done and self._error is None:
            self._error = UpstreamProtocolError("upstream closed the connection mid-response")
        _wake(self._head_waiter)
        _wake(self._waiter)

    # waiting -----------------------------------------------------------------------------------

    async def _wait_head(self) -> None:
        while not self._head_done and self._error is None:
            loop = asyncio.get_running_loop()
            self._head_waiter = fut = loop.create_future()
            handle = loop.call_later(self._read_timeout, _expire, fut)
            try:
                await fut
            finally:
                handle.cancel()
                self._head_waiter = None
        if self._error is not None and not self._head_done:
            raise self._error

    async def readany(self) -> bytes:
        """The next decoded body bytes; ``b""`` when the body is complete."""
        while True:
            if self._pending:
                data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
                self._pending.clear()
                self._pending_size = 0
                if self._paused and self._conn.transport is not None:
                    self._paused = False
                    self._conn.transport.resume_reading()
                return data
            if self._done:
                return b""
            if self._error is not None:
                raise self._error
            loop = asyncio.get_running_loop()
            self._waiter = fut = loop.create_future()
            handle = loop.call_later(self._read_timeout, _expire, fut)
            try:
                await fut
            finally:
                handle.cancel()
                self._waiter = None

    async def read(self) -> bytes:
        """The whole body."""
        parts: list[bytes] = []
        while True:
            data = await self.readany()
            if not data:
                return b"".join(parts) if len(parts) != 1 else parts[0]
            parts.append(data)

    def release(self) -> None:
        """Give the connection back (body complete, keep-alive) or close it."""
        conn = self._conn
        if conn.response is not self:
            return
        conn.response = None
        if self._done and self._keep_alive and self._error is None and not conn.closed:
            conn.pool._put(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Abandon the response and its connection."""
        self._keep_alive = False
        self.release()


def _wake(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(UpstreamTimeout("upstream read timed out"))


class Http1Pool:
    """Keep-alive connection pools by origin; one per process, shared across routing table reloads."""

    def __init__(self, max_idle_per_origin: int = 512, idle_timeout: float = 60.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._max_idle = max_idle_per_origin
        self._idle_timeout = idle_timeout
        self._ssl = ssl_context
        self._targets: dict[str, tuple[Origin, bytes, bytes]] = {}
        self._closed = False

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _target(self, url: str) -> tuple[Origin, bytes, bytes]:
        """(origin, request-target, Host header value) of ``url``, cached."""
        hit = self._targets.get(url)
        if hit is None:
            parts = urlsplit(url)
            scheme = parts.scheme
            if scheme not in ("http", "https") or not parts.hostname:
                raise UpstreamConnectError(f"unsupported upstream URL scheme {scheme!r}")
            port = parts.port or (443 if scheme == "https" else 80)
            host = parts.hostname
            default = (scheme == "http" and port == 80) or (scheme == "https" and port == 443)
            host_header = host if default else f"{host}:{port}"
            if ":" in host and not host.startswith("["):
                host_header = f"[{host}]" if default else f"[{host}]:{port}"
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            hit = ((scheme, host, port), target.encode(), host_header.encode())
            if len(self._targets) < 10000:
                self._targets[url] = hit
        return hit

    def _put(self, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        idle = self._idle.get(conn.origin)
        if idle is None:
            idle = self._idle[conn.origin] = deque()
        if len(idle) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._idle_timeout:
                return conn
            conn.close()
        return None

    async def _connect(self, origin: Origin, connect_timeout: float) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        conn = _Connection(self, origin)
        try:
            if scheme == "https":
                coro = loop.create_connection(lambda: conn, host, port, ssl=self._ssl_context(),
                                              server_hostname=host)
            else:
                coro = loop.create_connection(lambda: conn, host, port)
            await asyncio.wait_for(coro, connect_timeout)
        except TimeoutError:
            raise UpstreamTimeout(f"connect to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as err:
            raise UpstreamConnectError(f"cannot connect to {host}:{port}: {type(err).__name__}") from None
        return conn

    async def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        connect_timeout: float,
        read_timeout: float,
    ) -> Http1Response:
        """Send one request; returns when the response head arrived. Release the response when done."""
        if self._closed:
            raise UpstreamConnectError("the upstream client is closed")
        origin, target, host = self._target(url)
        head_parts = [method.encode(), b" ", target, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise UpstreamProtocolError(f"header {name} holds a line break")
            head_parts.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
        head_parts.append(b"Content-Length: %d\r\n\r\n" % len(body))
        payload = b"".join(head_parts) + body
        for attempt in (0, 1):
            conn = self._take(origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin, connect_timeout)
            resp = Http1Response(conn, read_timeout)
            conn.response = resp
            assert conn.transport is not None
            conn.transport.write(payload)
            try:
                await resp._wait_head()
            except UpstreamTimeout:
                resp.close()
                raise
            except UpstreamError:
                resp.close()
                if reused and attempt == 0 and not resp._received_any:
                    continue  # the idle connection was closed by the server: retry once on a new one
                raise
            return resp
        raise UpstreamProtocolError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
