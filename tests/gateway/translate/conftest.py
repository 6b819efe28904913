"""Shared fixtures for the translator tests: recorded-shape payloads, awkward chunkings, SDK clients.

The official ``openai`` and ``anthropic`` SDKs parse the translated bytes exactly as customers' tools
do: their HTTP client gets an in-memory transport (``httpx2.MockTransport``) whose handler runs the
translator, with ``_strict_response_validation=True`` so every body and chunk is validated against the
SDK's types.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from newapi_gateway.translate.base import StreamTranslator

FIXTURES = Path(__file__).parent / "fixtures"

Chunker = Callable[[bytes], tuple[bytes, list[bytes]]]


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _midline(data: bytes) -> list[bytes]:
    """Cut inside every line and between the two newlines of every event boundary."""
    cuts: set[int] = set()
    start = 0
    for line in data.splitlines(keepends=True):
        if len(line) > 2:
            cuts.add(start + len(line) // 2)
        cuts.add(start + len(line) - 1)  # just before the line's last terminator byte
        start += len(line)
    points = sorted(c for c in cuts if 0 < c < len(data))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _pairs(data: bytes) -> list[bytes]:
    """Two events per piece (several events in one chunk, cut exactly at boundaries)."""
    events = data.split(b"\n\n")
    tail = events.pop()
    out = [b"\n\n".join(events[i : i + 2]) + b"\n\n" for i in range(0, len(events), 2)]
    return [*out, tail] if tail else out


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


def _cr(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r")


CHUNKERS: dict[str, Chunker] = {
    "whole": lambda d: (d, [d]),
    "bytewise": lambda d: (d, _pieces(d, 1)),
    "size3": lambda d: (d, _pieces(d, 3)),
    "size7": lambda d: (d, _pieces(d, 7)),
    "size64": lambda d: (d, _pieces(d, 64)),
    "midline": lambda d: (d, _midline(d)),
    "pairs": lambda d: (d, _pairs(d)),
    "crlf-whole": lambda d: (_crlf(d), [_crlf(d)]),
    "crlf-bytewise": lambda d: (_crlf(d), _pieces(_crlf(d), 1)),
    "crlf-midline": lambda d: (_crlf(d), _midline(_crlf(d))),
    "cr-size7": lambda d: (_cr(d), _pieces(_cr(d), 7)),
}


@pytest.fixture(params=sorted(CHUNKERS))
def chunker(request: pytest.FixtureRequest) -> Chunker:
    """Every way of cutting an upstream stream into socket reads the tests care about."""
    return CHUNKERS[request.param]


def load_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def load_json(name: str) -> dict[str, Any]:
    value = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    assert isinstance(value, dict)
    return value


@pytest.fixture
def fixture_bytes() -> Callable[[str], bytes]:
    return load_bytes


@pytest.fixture
def fixture_json() -> Callable[[str], dict[str, Any]]:
    return load_json


def run_stream(stream: StreamTranslator, pieces: list[bytes]) -> bytes:
    """Feed every piece, then finish; the client bytes in order."""
    out = [stream.feed(piece) for piece in pieces]
    out.append(stream.finish())
    return b"".join(out)


@pytest.fixture
def feed_all() -> Callable[[StreamTranslator, list[bytes]], bytes]:
    return run_stream


def sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    """Parse client SSE bytes (LF framing, as the translators write it) into (event, data) pairs."""
    events: list[tuple[str | None, str]] = []
    for block in raw.decode("utf-8").split("\n\n"):
        if not block.strip():
            continue
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        events.append((name, "\n".join(data)))
    return events


@pytest.fixture
def parse_sse() -> Callable[[bytes], list[tuple[str | None, str]]]:
    return sse_events


Handler = Callable[[httpx2.Request], httpx2.Response]


@pytest.fixture
def openai_client() -> Iterator[Callable[[Handler], openai.OpenAI]]:
    """A factory of real ``openai.OpenAI`` clients whose HTTP goes to ``handler`` in memory."""
    clients: list[openai.OpenAI] = []

    def make(handler: Handler) -> openai.OpenAI:
        client = openai.OpenAI(
            api_key="sk-test-key",
            base_url="http://gateway.test/v1",
            http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
            max_retries=0,
            _strict_response_validation=True,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def anthropic_client() -> Iterator[Callable[[Handler], anthropic.Anthropic]]:
    """A factory of real ``anthropic.Anthropic`` clients whose HTTP goes to ``handler`` in memory."""
    clients: list[anthropic.Anthropic] = []

    def make(handler: Handler) -> anthropic.Anthropic:
        client = anthropic.Anthropic(
            api_key="sk-ant-test-key",
            base_url="http://gateway.test",
            http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
            max_retries=0,
            _strict_response_validation=True,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def json_response(status: int, body: Any) -> httpx2.Response:
    return httpx2.Response(status, headers={"content-type": "application/json"}, content=json.dumps(body).encode())


def sse_response(body: bytes) -> httpx2.Response:
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)


@pytest.fixture
def respond_json() -> Callable[[int, Any], httpx2.Response]:
    return json_response


@pytest.fixture
def respond_sse() -> Callable[[bytes], httpx2.Response]:
    return sse_response
