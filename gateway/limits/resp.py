"""A minimal pipelined RESP2 client for the hot path (the rate limiter's ``EVALSHA``).

Why not redis-py for this call: its per-command overhead (connection pool checkout, command
packing, response callbacks, retry wrapper) measured ~125 µs of CPU per call on the benchmark
machine — about a third of a whole pass-through request. This client keeps ONE connection per
process and matches replies to waiters in FIFO order, so concurrent commands pipeline on the wire
for free: commands queued in the same event-loop turn share one ``write`` system call, and
:meth:`PipelinedRedis.send_now` writes pre-encoded commands at once (the limiter's batches).
redis-py is still used for everything else (pub/sub, script loading in tests, health).

No Redis Cluster support: one connection to one server, no ``MOVED``/``ASK`` handling.

Failure handling: a connection error fails every in-flight command with ``ConnectionError``; the
next command reconnects. Timeouts cost nothing per command: each waiter records its deadline and
ONE timer per connection checks the oldest; when a reply is late, the reply order is unknown, so
the connection is dropped and every in-flight command fails with ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlparse


class RespError(Exception):
    """An error reply from the server (``-ERR ...``, ``-NOSCRIPT ...``)."""


class ReplyWaiter(Protocol):
    """What waits for one reply: an ``asyncio.Future`` or anything with the same three methods.

    ``set_result`` receives the decoded reply (a ``RespError`` instance for error replies);
    ``set_exception`` a ``ConnectionError``/``TimeoutError`` when the connection is lost or late.
    Both are called from the protocol's callbacks and must not raise.
    """

    def done(self) -> bool: ...

    def set_result(self, value: Any, /) -> None: ...

    def set_exception(self, exc: BaseException, /) -> None: ...


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        u = urlparse(url)
        if u.scheme not in ("redis", "rediss"):
            raise ValueError(f"redis url: scheme must be redis:// or rediss://, got {url.split('://')[0]!r}")
        path = u.path.lstrip("/")
        return cls(
            host=u.hostname or "localhost",
            port=u.port or 6379,
            db=int(path) if path else 0,
            username=unquote(u.username) if u.username else None,
            password=unquote(u.password) if u.password else None,
            tls=u.scheme == "rediss",
        )


def bulk(arg: bytes) -> bytes:
    """One RESP bulk string (for callers that pre-encode parts of a command)."""
    return b"$%d\r\n%b\r\n" % (len(arg), arg)


def encode(*args: bytes | str | int | float) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        b = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)


_INCOMPLETE = object()


def parse(buf: bytes | bytearray, pos: int) -> tuple[Any, int]:
    """Parse one reply at ``pos``; returns (value, next position) or (_INCOMPLETE, pos)."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind = buf[pos]
    nxt = end + 2
    if kind == 0x24:  # '$' bulk string (the limiter's reply: checked first)
        size = int(buf[pos + 1 : end])
        if size < 0:
            return None, nxt
        if len(buf) < nxt + size + 2:
            return _INCOMPLETE, pos
        return bytes(buf[nxt : nxt + size]), nxt + size + 2
    line = bytes(buf[pos + 1 : end])
    if kind == 0x3A:  # ':' integer
        return int(line), nxt
    if kind == 0x2B:  # '+' simple string
        return line.decode(), nxt
    if kind == 0x2D:  # '-' error
        return RespError(line.decode()), nxt
    if kind == 0x2A:  # '*' array
        count = int(line)
        if count < 0:
            return None, nxt
        items = []
        for _ in range(count):
            item, nxt = parse(buf, nxt)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            items.append(item)
        return items, nxt
    raise ConnectionError(f"unexpected RESP reply type {chr(kind)!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.waiters: collections.deque[ReplyWaiter] = collections.deque()
        self.deadlines: collections.deque[float] = collections.deque()  # parallel to waiters
        self.buf = bytearray()
        self.closed = False
        self._outgoing: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None

    def expect(self, waiter: ReplyWaiter) -> None:
        """Register the waiter of the next command written (FIFO), with its deadline."""
        deadline = self._loop.time() + self.timeout
        self.waiters.append(waiter)
        self.deadlines.append(deadline)
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if not self.deadlines or self.closed:
            return
        oldest = self.deadlines[0]
        if oldest <= self._loop.time():
            self._fail(TimeoutError(f"redis did not answer within {self.timeout:g} s"))
        else:
            self._timer = self._loop.call_at(oldest, self._check_deadline)

    def queue(self, payload: bytes) -> None:
        """Queue a command; every command queued in one event-loop turn goes out in ONE write."""
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(payload)

    def write_now(self, payload: bytes) -> None:
        """Write at once, after whatever is queued (so the reply order matches the waiters)."""
        if self._outgoing:
            self._outgoing.append(payload)
            payload = b"".join(self._outgoing)
            self._outgoing.clear()
        if self.transport is not None and not self.closed and not self.transport.is_closing():
            self.transport.write(payload)

    def _flush(self) -> None:
        if not self._outgoing:
            return  # already written by write_now
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        if self.transport is not None and not self.closed and not self.transport.is_closing():
            self.transport.write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        buf: bytes | bytearray
        if self.buf:
            self.buf += data
            buf = self.buf
        else:
            buf = data  # common case: whole replies in one read, no copy into the buffer
        pos = 0
        size = len(buf)
        while pos < size:
            try:
                value, nxt = parse(buf, pos)
            except (ValueError, ConnectionError) as exc:
                self._fail(ConnectionError(f"bad reply from redis: {exc}"))
                return
            if value is _INCOMPLETE:
                break
            pos = nxt
            if not self.waiters:
                self._fail(ConnectionError("redis sent a reply nobody asked for"))
                return
            waiter = self.waiters.popleft()
            self.deadlines.popleft()
            if not waiter.done():
                waiter.set_result(value)
            if self.closed:
                return
        if buf is data:
            if pos < size:
                self.buf += data[pos:]
        else:
            del self.buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"connection to redis lost: {exc}" if exc else "connection to redis closed"))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        self._outgoing.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.deadlines.clear()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


class PipelinedRedis:
    """One pipelined connection; ``call`` sends a command and awaits its reply."""

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        self.address = RedisAddress.parse(url)
        self.timeout = timeout
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._proto is not None and not self._proto.closed:
                return self._proto
            a = self.address
            loop = asyncio.get_running_loop()
            ctx = ssl.create_default_context() if a.tls else None
            timeout = self.timeout
            async with asyncio.timeout(timeout):
                _, proto = await loop.create_connection(lambda: _Protocol(timeout), a.host, a.port, ssl=ctx)
                setup: list[bytes] = []
                if a.password is not None:
                    setup.append(encode("AUTH", *([a.username] if a.username else []), a.password))
                if a.db:
                    setup.append(encode("SELECT", a.db))
                for command in setup:
                    reply = await self._send(proto, command)
                    if isinstance(reply, RespError):
                        proto._fail(ConnectionError(str(reply)))
                        raise ConnectionError(f"redis rejected connection setup: {reply}")
            self._proto = proto
            return proto

    async def connect(self) -> None:
        """Connect now unless connected (raises ConnectionError / TimeoutError / OSError)."""
        await self._connect()

    @property
    def connected(self) -> bool:
        """True when commands can be written now (``send_now``)."""
        proto = self._proto
        return proto is not None and not proto.closed

    @staticmethod
    def _send(proto: _Protocol, payload: bytes) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        proto.expect(fut)
        proto.queue(payload)
        return fut

    def send_now(self, commands: list[tuple[bytes, ReplyWaiter]]) -> bool:
        """Write pre-encoded commands in ONE write; each waiter gets its command's reply.

        Returns False (nothing sent, waiters untouched) when not connected: ``await connect()``
        first. The waiters' timeout is this client's ``timeout``.
        """
        proto = self._proto
        if proto is None or proto.closed:
            return False
        for _, waiter in commands:
            proto.expect(waiter)
        proto.write_now(commands[0][0] if len(commands) == 1 else b"".join(c for c, _ in commands))
        return True

    async def call(self, *args: bytes | str | int | float) -> Any:
        """Send one command; returns the reply (a ``RespError`` instance for error replies).

        Raises ConnectionError / TimeoutError / OSError when Redis cannot be reached or is late.
        """
        proto = self._proto
        if proto is None or proto.closed:
            proto = await self._connect()
        return await self._send(proto, encode(*args))

    async def close(self) -> None:
        if self._proto is not None:
            self._proto._fail(ConnectionError("redis client closed"))
        self._proto = None
