"""The lean upstream HTTP/1.1 client against a raw TCP server with scripted (and awkward) framing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from newapi_gateway.http1 import Http1Pool, UpstreamConnectError, UpstreamProtocolError, UpstreamTimeout

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.responses: list[list[bytes] | None] = []  # per request: pieces to send (None: close silently)
        self.delay = 0.0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                self.requests.append(await read_request(reader))
                pieces = self.responses.pop(0) if self.responses else [OK]
                if pieces is None:
                    break
                for piece in pieces:
                    if piece == b"<close>":
                        writer.close()
                        return
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(self.delay)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    s = Server()
    srv = await asyncio.start_server(s.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    yield s, f"http://127.0.0.1:{port}/v1/x?y=1"
    srv.close()


async def post(pool: Http1Pool, url: str, read_timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    resp = await pool.request("POST", url, {"Content-Type": "application/json"}, b'{"a":1}', 2, read_timeout)
    try:
        return resp.status, resp.headers, await resp.read()
    finally:
        resp.release()


async def test_content_length_keep_alive_and_request_shape(server: tuple[Server, str]) -> None:
    s, url = server
    pool = Http1Pool()
    for _ in range(3):
        assert await post(pool, url) == (200, {"content-length": "2"}, b"ok")
    assert s.connections == 1  # one kept-alive connection
    first = s.requests[0]
    assert first.startswith(b"POST /v1/x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Type: application/json\r\n" in first
    assert first.endswith(b"Content-Length: 7\r\n\r\n{\"a\":1}")
    await pool.close()


async def test_chunked_body_split_everywhere_with_trailers(server: tuple[Server, str]) -> None:
    s, url = server
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: y\r\n\r\n")
    s.responses.append([raw[i:i + 1] for i in range(len(raw))])  # one byte per write
    s.responses.append([raw])
    pool = Http1Pool()
    assert (await post(pool, url))[2] == b"hello world"
    assert (await post(pool, url))[2] == b"hello world"
    assert s.connections == 1
    await pool.close()


async def test_streaming_readany_and_read_until_close(server: tuple[Server, str]) -> None:
    s, url = server
    s.delay = 0.02
    s.responses.append([b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", b"data: 1\n\n", b"data: 2\n\n",
                        b"<close>"])
    pool = Http1Pool()
    resp = await pool.request("POST", url, {}, b"{}", 2, 5)
    got = []
    while chunk := await resp.readany():
        got.append(chunk)
    resp.release()
    assert b"".join(got) == b"data: 1\n\ndata: 2\n\n"
    assert len(got) >= 2  # delivered as it arrived
    await pool.close()


async def test_connection_close_and_stale_idle_connection_retry(server: tuple[Server, str]) -> None:
    s, url = server
    s.responses.append([b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\na"])
    pool = Http1Pool()
    assert (await post(pool, url))[2] == b"a"
    assert (await post(pool, url))[2] == b"ok"  # a new connection after "Connection: close"
    assert s.connections == 2
    s.responses.append(None)  # the server drops the kept-alive connection without answering
    assert (await post(pool, url))[2] == b"ok"  # retried once on a fresh connection
    assert s.connections == 3
    await pool.close()


async def test_errors(server: tuple[Server, str]) -> None:
    s, url = server
    pool = Http1Pool()
    s.responses.append([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", b"<close>"])
    resp = await pool.request("POST", url, {}, b"{}", 2, 5)
    with pytest.raises(UpstreamProtocolError):
        await resp.read()
    resp.release()
    s.responses.append([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"])  # then silence
    resp = await pool.request("POST", url, {}, b"{}", 2, 0.2)
    with pytest.raises(UpstreamTimeout):
        await resp.read()
    resp.close()
    s.responses.append([b"garbage\r\n\r\n"])
    with pytest.raises(UpstreamProtocolError):
        await post(pool, url)
    with pytest.raises(UpstreamConnectError):
        await post(pool, "http://127.0.0.1:1/v1")
    with pytest.raises(UpstreamProtocolError):
        await pool.request("POST", url, {"X-Bad": "a\r\nInjected: 1"}, b"", 2, 2)
    await pool.close()


async def test_interim_100_continue_is_skipped(server: tuple[Server, str]) -> None:
    s, url = server
    s.responses.append([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nz"])
    pool = Http1Pool()
    assert await post(pool, url) == (201, {"content-length": "1"}, b"z")
    await pool.close()
