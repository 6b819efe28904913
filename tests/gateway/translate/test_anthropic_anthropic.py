"""anthropic client -> anthropic upstream: pass-through with model rename, usage read from events/body."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import pytest

from newapi_gateway.translate import AnthropicToAnthropic, get_translator, join_url
from newapi_gateway.translate.base import StreamTranslator, UnsupportedOperation, UpstreamResponseError, Usage

Chunker = Callable[[bytes], tuple[bytes, list[bytes]]]

STREAM_USAGE = {
    "anthropic_stream_text.sse": Usage(25 + 100 + 2048, 15, True, cache_read_tokens=2048, cache_write_tokens=100),
    "anthropic_stream_tool_use.sse": Usage(472, 89, True),
    "anthropic_stream_thinking.sse": Usage(40, 64, True),
}


@pytest.fixture
def tr() -> AnthropicToAnthropic:
    t = get_translator("anthropic", "anthropic")
    assert isinstance(t, AnthropicToAnthropic)
    return t


def test_request_renames_model_and_sets_version(tr: AnthropicToAnthropic) -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "stream": True,
    }
    snapshot = json.dumps(body)
    req = tr.request("messages", body, "claude-sonnet-4-5-20250929")
    assert req.path == "/v1/messages"
    assert req.headers == {"anthropic-version": "2023-06-01"}
    assert req.stream is True
    assert req.body == {**body, "model": "claude-sonnet-4-5-20250929"}
    assert json.dumps(body) == snapshot
    assert tr.request("messages", {"model": "x", "messages": []}, "y").stream is False


@pytest.mark.parametrize("operation", ["chat", "completions", "embeddings"])
def test_openai_operations_are_unsupported(tr: AnthropicToAnthropic, operation: Any) -> None:
    with pytest.raises(UnsupportedOperation):
        tr.request(operation, {"model": "m"}, "up")


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("https://api.anthropic.com", "https://api.anthropic.com/v1/messages"),
        ("https://api.anthropic.com/", "https://api.anthropic.com/v1/messages"),
        ("https://api.anthropic.com/v1", "https://api.anthropic.com/v1/messages"),
        ("https://api.anthropic.com/v1/", "https://api.anthropic.com/v1/messages"),
        ("http://proxy.internal:8080/anthropic", "http://proxy.internal:8080/anthropic/v1/messages"),
    ],
)
def test_endpoint_joining(endpoint: str, url: str) -> None:
    assert join_url(endpoint, "/v1/messages") == url


def test_openai_paths_join_under_v1() -> None:
    assert (
        join_url("http://vllm.vllm.svc:8000/v1", "/chat/completions") == "http://vllm.vllm.svc:8000/v1/chat/completions"
    )
    assert join_url("http://vllm:8000/v1/", "/embeddings") == "http://vllm:8000/v1/embeddings"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("anthropic_message.json", Usage(2095 + 1024, 503, True, cache_read_tokens=1024)),
        ("anthropic_message_tool_use.json", Usage(384, 92, True)),
    ],
)
def test_response_passes_through_with_usage(
    tr: AnthropicToAnthropic, fixture_bytes: Callable[[str], bytes], name: str, expected: Usage
) -> None:
    raw = fixture_bytes(name)
    parsed = tr.response("messages", 200, json.loads(raw))
    assert parsed.body == json.loads(raw)
    assert parsed.usage == expected
    fast = tr.response_bytes("messages", 200, raw)
    assert fast.body is raw
    assert fast.usage == expected
    with pytest.raises(UpstreamResponseError):
        tr.response_bytes("messages", 200, b"upstream connect error")


ANTHROPIC_ERRORS = [
    (400, "invalid_request_error", 'messages: roles must alternate between "user" and "assistant"'),
    (401, "authentication_error", "invalid x-api-key"),
    (403, "permission_error", "Your API key does not have permission to use the specified resource."),
    (404, "not_found_error", "model: claude-9"),
    (413, "request_too_large", "Request exceeds the maximum allowed number of bytes."),
    (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    (529, "overloaded_error", "Overloaded"),
]


@pytest.mark.parametrize(("status", "etype", "message"), ANTHROPIC_ERRORS)
def test_anthropic_errors_pass_through(tr: AnthropicToAnthropic, status: int, etype: str, message: str) -> None:
    body = {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}
    assert tr.error(status, body, json.dumps(body)) == (status, body)


@pytest.mark.parametrize(
    ("status", "body", "text", "client", "etype"),
    [
        (
            500,
            {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}},
            "",
            502,
            "api_error",
        ),
        (502, None, "upstream connect error or disconnect/reset before headers", 502, "api_error"),
        (503, None, "no healthy upstream", 529, "overloaded_error"),
        (504, None, "", 504, "timeout_error"),
    ],
)
def test_server_errors_are_rewrapped(
    tr: AnthropicToAnthropic, status: int, body: dict[str, Any] | None, text: str, client: int, etype: str
) -> None:
    out_status, out = tr.error(status, body, text)
    assert out_status == client
    assert out["type"] == "error"
    assert out["error"]["type"] == etype
    assert out["error"]["message"].startswith(f"upstream error (HTTP {status}): ")


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (400, anthropic.BadRequestError),
        (413, anthropic.RequestTooLargeError),
        (429, anthropic.RateLimitError),
        (529, anthropic.OverloadedError),
        (500, anthropic.InternalServerError),
    ],
)
def test_sdk_raises_the_matching_exception(
    tr: AnthropicToAnthropic, anthropic_client: Callable[..., anthropic.Anthropic], status: int, exc: type[Exception]
) -> None:
    etype = {400: "invalid_request_error", 413: "request_too_large", 429: "rate_limit_error"}.get(status, "api_error")
    upstream = {"type": "error", "error": {"type": etype, "message": f"upstream said {status}"}}

    def handler(request: httpx2.Request) -> httpx2.Response:
        code, body = tr.error(status, upstream, json.dumps(upstream))
        return httpx2.Response(code, headers={"content-type": "application/json"}, content=json.dumps(body).encode())

    with pytest.raises(exc) as info:
        anthropic_client(handler).messages.create(
            model="gateway-claude", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert f"upstream said {status}" in str(info.value)


@pytest.mark.parametrize("name", sorted(STREAM_USAGE))
def test_stream_passes_through_and_reads_usage(
    tr: AnthropicToAnthropic,
    fixture_bytes: Callable[[str], bytes],
    feed_all: Callable[[StreamTranslator, list[bytes]], bytes],
    chunker: Chunker,
    name: str,
) -> None:
    data, pieces = chunker(fixture_bytes(name))
    stream = tr.stream("messages", {"model": "m", "stream": True})
    assert feed_all(stream, pieces) == data
    assert stream.usage == STREAM_USAGE[name]
    assert stream.upstream_error is None


def test_stream_error_event_is_reported(
    tr: AnthropicToAnthropic,
    fixture_bytes: Callable[[str], bytes],
    feed_all: Callable[[StreamTranslator, list[bytes]], bytes],
    chunker: Chunker,
) -> None:
    data, pieces = chunker(fixture_bytes("anthropic_stream_overloaded.sse"))
    stream = tr.stream("messages", {"model": "m", "stream": True})
    assert feed_all(stream, pieces) == data
    assert stream.upstream_error == (
        529,
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    assert stream.usage == Usage(12, 1, True)


def test_stream_usage_is_known_as_soon_as_message_start_arrives(
    tr: AnthropicToAnthropic, fixture_bytes: Callable[[str], bytes]
) -> None:
    first = fixture_bytes("anthropic_stream_tool_use.sse").split(b"\n\n")[0] + b"\n\n"
    stream = tr.stream("messages", {})
    assert stream.feed(first) == first
    assert stream.usage == Usage(472, 2, True)


def test_sdk_accumulates_the_passed_through_stream(
    tr: AnthropicToAnthropic,
    fixture_bytes: Callable[[str], bytes],
    feed_all: Callable[[StreamTranslator, list[bytes]], bytes],
    anthropic_client: Callable[..., anthropic.Anthropic],
) -> None:
    upstream = fixture_bytes("anthropic_stream_tool_use.sse")
    recorded: list[StreamTranslator] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        assert tr.request("messages", body, "claude-sonnet-4-5-20250929").stream is True
        stream = tr.stream("messages", body)
        recorded.append(stream)
        out = feed_all(stream, [upstream[i : i + 11] for i in range(0, len(upstream), 11)])
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=out)

    client = anthropic_client(handler)
    with client.messages.stream(
        model="gateway-claude", max_tokens=1024, messages=[{"role": "user", "content": "Weather in SF?"}]
    ) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    tools = [block for block in message.content if block.type == "tool_use"]
    assert [t.input for t in tools] == [
        {"location": "San Francisco, CA", "unit": "fahrenheit"},
        {"timezone": "America/Los_Angeles"},
    ]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (472, 89)
    assert recorded[0].usage == Usage(472, 89, True)
