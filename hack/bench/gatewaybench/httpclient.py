"""A minimal blocking HTTP/1.1 client for precise sequential measurements.

One keep-alive TCP connection, requests sent as pre-built bytes, responses framed by
``Content-Length`` or chunked encoding (or connection close), timed with ``perf_counter_ns``.
Its own overhead (tens of microseconds) is the same in every scenario, so differences between
scenarios are what the system under test adds.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


class HTTPError(RuntimeError):
    """The server answered with something this client cannot use (status, framing)."""


def build_request(method: str, url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """Raw HTTP/1.1 request bytes for ``url`` (keep-alive)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Timing:
    """One exchange: status, total time, and (streams) first ``data:`` and ``[DONE]`` times, in ns."""

    status: int
    total_ns: int
    first_data_ns: int | None = None
    done_ns: int | None = None


class Connection:
    """One keep-alive connection to ``host:port``; reconnects when the server closed it."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.buf.clear()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.buf.clear()
        return sock

    def _recv(self) -> bytes:
        assert self.sock is not None
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        return data

    def _read_until(self, marker: bytes) -> bytes:
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + len(marker)]
                return out
            self.buf += self._recv()

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self._recv()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def exchange(self, request: bytes, watch_stream: bool = False) -> Timing:
        """Send ``request``, read the whole response; with ``watch_stream`` note SSE milestones."""
        sock = self.sock or self._connect()
        start = time.perf_counter_ns()
        sock.sendall(request)
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status_line, _, header_text = head.partition("\r\n")
        try:
            status = int(status_line.split(" ", 2)[1])
        except (IndexError, ValueError):
            raise HTTPError(f"bad status line {status_line!r}") from None
        headers = {}
        for line in header_text.split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        first_data: int | None = None
        done: int | None = None
        seen = b""

        def note(chunk: bytes) -> None:
            nonlocal first_data, done, seen
            if not watch_stream or done is not None:
                return
            window = seen[-16:] + chunk
            now = time.perf_counter_ns()
            if first_data is None and b"data:" in window:
                first_data = now - start
            if b"[DONE]" in window or b"message_stop" in window:
                done = now - start
            seen = window

        keep_alive = headers.get("connection", "").lower() != "close"
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = self._read_until(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")  # no trailers expected
                    break
                note(self._read_exact(size))
                self._read_exact(2)
        elif "content-length" in headers:
            note(self._read_exact(int(headers["content-length"])))
        else:
            keep_alive = False
            while True:
                try:
                    self.buf += self._recv()
                except ConnectionError:
                    break
                note(bytes(self.buf))
                self.buf.clear()
        total = time.perf_counter_ns() - start
        if not keep_alive:
            self.close()
        return Timing(status=status, total_ns=total, first_data_ns=first_data, done_ns=done)


def run_sequential(
    url: str, request: bytes, count: int, warmup: int, watch_stream: bool = False, timeout: float = 30.0
) -> list[Timing]:
    """``warmup`` then ``count`` sequential exchanges over one keep-alive connection."""
    conn = Connection(url, timeout)
    try:
        for _ in range(warmup):
            conn.exchange(request, watch_stream)
        return [conn.exchange(request, watch_stream) for _ in range(count)]
    finally:
        conn.close()
