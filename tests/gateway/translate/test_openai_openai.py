"""openai client -> openai-compatible upstream: pass-through with model rename, usage injected/stripped."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest

from newapi_gateway.translate import OpenAIToOpenAI, get_translator
from newapi_gateway.translate.base import (
    StreamTranslator,
    UnsupportedOperation,
    UpstreamResponseError,
    Usage,
)

Chunker = Callable[[bytes], tuple[bytes, list[bytes]]]

CHAT_STREAMS = ["openai_chat_stream.sse", "openai_chat_stream_tools.sse", "vllm_chat_stream.sse"]


@pytest.fixture
def tr() -> OpenAIToOpenAI:
    t = get_translator("openai", "openai")
    assert isinstance(t, OpenAIToOpenAI)
    return t


def without_usage_chunk(data: bytes) -> bytes:
    """The stream as a client that did not ask for usage must see it: minus the usage-only event."""
    sep = b"\r\n\r\n" if b"\r\n" in data else (b"\r\r" if b"\r" in data else b"\n\n")
    events = data.split(sep)
    kept = [e for e in events if b'"choices":[],' not in e]
    assert len(kept) == len(events) - 1, "fixture must hold exactly one usage-only chunk"
    return sep.join(kept)


# ------------------------------------------------------------------------------------------------
# requests
# ------------------------------------------------------------------------------------------------


def test_chat_request_renames_model_and_leaves_the_client_body_alone(tr: OpenAIToOpenAI) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}
    snapshot = json.dumps(body)
    req = tr.request("chat", body, "gpt-4o-2024-08-06")
    assert req.path == "/chat/completions"
    assert req.stream is False
    assert req.headers == {}
    assert req.body == {**body, "model": "gpt-4o-2024-08-06"}
    assert "stream_options" not in req.body
    assert json.dumps(body) == snapshot


def test_stream_request_injects_include_usage(tr: OpenAIToOpenAI) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    req = tr.request("chat", body, "up")
    assert req.stream is True
    assert req.body["stream_options"] == {"include_usage": True}
    assert "stream_options" not in body


def test_stream_request_keeps_other_stream_options_and_overrides_false(tr: OpenAIToOpenAI) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": False, "continuous_usage_stats": True},
    }
    req = tr.request("chat", body, "up")
    assert req.body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert body["stream_options"] == {"include_usage": False, "continuous_usage_stats": True}


def test_completions_and_embeddings_paths(tr: OpenAIToOpenAI) -> None:
    req = tr.request("completions", {"model": "m", "prompt": "Say this is a test", "stream": True}, "instruct")
    assert (req.path, req.stream, req.body["model"]) == ("/completions", True, "instruct")
    assert req.body["stream_options"] == {"include_usage": True}
    req = tr.request("embeddings", {"model": "e", "input": ["a", "b"], "encoding_format": "float"}, "emb-3")
    assert (req.path, req.stream) == ("/embeddings", False)
    assert req.body == {"model": "emb-3", "input": ["a", "b"], "encoding_format": "float"}


def test_messages_operation_is_unsupported(tr: OpenAIToOpenAI) -> None:
    with pytest.raises(UnsupportedOperation):
        tr.request("messages", {"model": "m"}, "up")


# ------------------------------------------------------------------------------------------------
# non-stream responses
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "operation", "expected"),
    [
        ("openai_chat_completion.json", "chat", Usage(1117, 46, True, cache_read_tokens=1024)),
        ("openai_chat_completion_tools.json", "chat", Usage(82, 17, True)),
        ("vllm_chat_completion.json", "chat", Usage(20, 8, True)),
        ("openai_completion.json", "completions", Usage(5, 7, True)),
        ("openai_embeddings.json", "embeddings", Usage(8, 0, True)),
    ],
)
def test_response_passes_body_through_with_usage(
    tr: OpenAIToOpenAI,
    fixture_bytes: Callable[[str], bytes],
    name: str,
    operation: Any,
    expected: Usage,
) -> None:
    raw = fixture_bytes(name)
    parsed = tr.response(operation, 200, json.loads(raw))
    assert parsed.body == json.loads(raw)
    assert parsed.usage == expected
    fast = tr.response_bytes(operation, 200, raw)
    assert fast.body is raw  # not decoded and re-encoded
    assert (fast.status, fast.usage) == (200, expected)


def test_zero_usage_is_reported_and_missing_usage_is_not(tr: OpenAIToOpenAI) -> None:
    body = {"id": "x", "object": "chat.completion", "usage": {"prompt_tokens": 0, "completion_tokens": 0}}
    assert tr.response("chat", 200, body).usage == Usage(0, 0, reported=True)
    assert tr.response_bytes("chat", 200, json.dumps(body).encode()).usage == Usage(0, 0, reported=True)
    assert tr.response("chat", 200, {"id": "x"}).usage == Usage()
    assert tr.response_bytes("chat", 200, b'{"id":"x","usage":null}').usage == Usage()
    assert tr.response_bytes("chat", 200, b'{"id":"x"}').usage == Usage()


def test_fast_usage_read_ignores_usage_words_in_content(tr: OpenAIToOpenAI) -> None:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": 'print({"usage": {"prompt_tokens": 999}})',
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "usage", "arguments": '{"usage":1}'}}
                    ],
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    raw = json.dumps(body).encode()
    assert tr.response_bytes("chat", 200, raw).usage == Usage(3, 4, True)


def test_non_json_success_body_is_an_upstream_fault(tr: OpenAIToOpenAI) -> None:
    with pytest.raises(UpstreamResponseError):
        tr.response_bytes("chat", 200, b"<html>oops</html>")


def test_sdk_parses_the_passed_through_response(
    tr: OpenAIToOpenAI,
    fixture_bytes: Callable[[str], bytes],
    openai_client: Callable[..., openai.OpenAI],
) -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        up = tr.request("chat", json.loads(request.content), "gpt-4o-2024-08-06")
        seen.append(up.body)
        out = tr.response_bytes("chat", 200, fixture_bytes("openai_chat_completion.json"))
        return httpx2.Response(out.status, headers={"content-type": "application/json"}, content=out.body)

    client = openai_client(handler)
    completion = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Describe it"}])
    assert completion.choices[0].message.content is not None
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 1117
    assert seen[0]["model"] == "gpt-4o-2024-08-06"


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------


def test_openai_shaped_client_errors_pass_through_unchanged(tr: OpenAIToOpenAI) -> None:
    cases: list[tuple[int, dict[str, Any]]] = [
        (
            400,
            {
                "error": {
                    "message": "Invalid value for 'temperature': must be <= 2.",
                    "type": "invalid_request_error",
                    "param": "temperature",
                    "code": "invalid_value",
                }
            },
        ),
        (
            404,
            {
                "error": {
                    "message": "The model `gpt-9` does not exist or you do not have access to it.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "model_not_found",
                }
            },
        ),
        (
            429,
            {
                "error": {
                    "message": "Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM).",
                    "type": "tokens",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
        ),
        # vLLM >= 0.10 shape: code is the HTTP status as an integer
        (400, {"error": {"message": "max_tokens is too large", "type": "BadRequestError", "param": None, "code": 400}}),
    ]
    for status, body in cases:
        assert tr.error(status, body, json.dumps(body)) == (status, body)


def test_vllm_legacy_error_shape_is_wrapped(tr: OpenAIToOpenAI) -> None:
    body = {
        "object": "error",
        "message": "This model's maximum context length is 32768 tokens.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
    status, out = tr.error(400, body, json.dumps(body))
    assert status == 400
    assert out == {
        "error": {
            "message": "This model's maximum context length is 32768 tokens.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


@pytest.mark.parametrize(
    ("upstream", "client", "etype"),
    [
        (500, 502, "upstream_error"),
        (502, 502, "upstream_error"),
        (503, 503, "upstream_overloaded"),
        (504, 504, "upstream_timeout"),
        (408, 504, "upstream_timeout"),
        (529, 503, "upstream_overloaded"),
    ],
)
def test_server_errors_are_rewrapped(tr: OpenAIToOpenAI, upstream: int, client: int, etype: str) -> None:
    body = {"error": {"message": "The server had an error processing your request.", "type": "server_error"}}
    status, out = tr.error(upstream, body, json.dumps(body))
    assert status == client
    assert out["error"]["type"] == etype
    assert out["error"]["message"] == (
        f"upstream error (HTTP {upstream}): The server had an error processing your request."
    )
    assert set(out["error"]) == {"message", "type", "param", "code"}


def test_non_json_errors_are_wrapped_without_echoing_html(tr: OpenAIToOpenAI) -> None:
    status, out = tr.error(502, None, "Bad Gateway")
    assert status == 502
    assert out["error"]["message"] == "upstream error (HTTP 502): Bad Gateway"
    status, out = tr.error(503, None, "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>")
    assert status == 503
    assert "<" not in out["error"]["message"]
    status, out = tr.error(400, {"detail": "Not Found"}, '{"detail":"Not Found"}')
    assert (status, out["error"]["message"], out["error"]["type"]) == (400, "Not Found", "invalid_request_error")


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_sdk_raises_the_matching_exception(
    tr: OpenAIToOpenAI, openai_client: Callable[..., openai.OpenAI], status: int, exc: type[Exception]
) -> None:
    upstream_body = {"error": {"message": f"upstream said {status}", "type": "x", "param": None, "code": None}}

    def handler(request: httpx2.Request) -> httpx2.Response:
        code, body = tr.error(status, upstream_body, json.dumps(upstream_body))
        return httpx2.Response(code, headers={"content-type": "application/json"}, content=json.dumps(body).encode())

    with pytest.raises(exc) as info:
        openai_client(handler).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert f"upstream said {status}" in str(info.value)


# ------------------------------------------------------------------------------------------------
# streams
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CHAT_STREAMS)
def test_stream_strips_unrequested_usage_chunk_but_records_usage(
    tr: OpenAIToOpenAI,
    fixture_bytes: Callable[[str], bytes],
    feed_all: Callable[[StreamTranslator, list[bytes]], bytes],
    chunker: Chunker,
    name: str,
) -> None:
    data, pieces = chunker(fixture_bytes(name))
    stream = tr.stream("chat", {"model": "m", "messages": [], "stream": True})
    assert feed_all(stream, pieces) == without_usage_chunk(data)
    expected = {
        "openai_chat_stream.sse": Usage(19, 17, True),
        "openai_chat_stream_tools.sse": Usage(84, 48, True, cache_read_tokens=64),
        "vllm_chat_stream.sse": Usage(31, 5, True),
    }[name]
    assert stream.usage == expected
    assert stream.upstream_error is None


@pytest.mark.parametrize("name", [*CHAT_STREAMS, "openai_completions_stream.sse"])
def test_stream_is_byte_for_byte_when_client_asked_for_usage(
    tr: OpenAIToOpenAI,
    fixture_bytes: Callable[[str], bytes],
    feed_all: Callable[[StreamTranslator, list[bytes]], bytes],
    chunker: Chunker,
    name: str,
) -> None:
    data, pieces = chunker(fixture_bytes(name))
    stream = tr.stream("chat", {"model": "m", "stream": True, "stream_options": {"include_usage": True}})
    assert feed_all(stream, pieces) == data
    assert stream.usage.reported


def test_completions_stream_strips_usage_chunk(
    tr: OpenAIToOpenAI,
    fixture_bytes: Callable[[str], bytes],
    feed_all: Callable[[StreamTranslator, list[bytes]], bytes],
) -> None:
    data = fixture_bytes("openai_completions_stream.sse")
    stream = tr.stream("completions", {"model": "m", "prompt": "x", "stream": True})
    assert feed_all(stream, [data]) == without_usage_chunk(data)
    assert stream.usage == Usage(5, 7, True)


def test_untouched_events_are_returned_as_the_same_object(
    tr: OpenAIToOpenAI, fixture_bytes: Callable[[str], bytes]
) -> None:
    events = [e + b"\n\n" for e in fixture_bytes("vllm_chat_stream.sse").split(b"\n\n") if e]
    stream = tr.stream("chat", {"model": "m", "stream": True})
    for event in events[:3]:
        assert stream.feed(event) is event


def test_zero_usage_in_stream_is_authoritative_and_absent_usage_is_not_reported(tr: OpenAIToOpenAI) -> None:
    chunk = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[%s]%s}\n\n'
    content = b'{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}'
    zero = b',"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}'
    stream = tr.stream("chat", {"stream": True})
    out = stream.feed(chunk % (content, b"") + chunk % (b"", zero) + b"data: [DONE]\n\n") + stream.finish()
    assert stream.usage == Usage(0, 0, reported=True)
    assert out == chunk % (content, b"") + b"data: [DONE]\n\n"
    stream = tr.stream("chat", {"stream": True})
    stream.feed(chunk % (content, b"") + b"data: [DONE]\n\n")
    stream.finish()
    assert stream.usage == Usage()


def test_continuous_usage_on_content_chunks_is_recorded_not_stripped(tr: OpenAIToOpenAI) -> None:
    """vLLM's continuous_usage_stats puts cumulative usage on every chunk: the last one wins."""
    chunk = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}],"usage":{"prompt_tokens":7,"completion_tokens":%d,"total_tokens":%d}}\n\n'  # noqa: E501
    data = chunk % (b"a", 1, 8) + chunk % (b"b", 2, 9) + b"data: [DONE]\n\n"
    stream = tr.stream("chat", {"stream": True})
    assert stream.feed(data) + stream.finish() == data
    assert stream.usage == Usage(7, 2, True)


def test_missing_final_blank_line_is_flushed_by_finish(tr: OpenAIToOpenAI) -> None:
    usage = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}'  # noqa: E501
    stream = tr.stream("chat", {"stream": True})
    assert stream.feed(usage) == b""
    assert stream.finish() == b""  # the usage chunk, unrequested, is dropped even unterminated
    assert stream.usage == Usage(2, 3, True)
    stream = tr.stream("chat", {"stream": True})
    assert stream.feed(b'data: {"choices":[{"delta":{}}]}\n\ndata: [DONE]') == b'data: {"choices":[{"delta":{}}]}\n\n'
    assert stream.finish() == b"data: [DONE]"


@pytest.mark.parametrize(
    ("event", "status"),
    [
        (b'data: {"error":{"message":"CUDA out of memory","type":"InternalServerError","param":null,"code":500}}', 502),
        (b'data: {"object":"error","message":"Request timed out","type":"TimeoutError","param":null,"code":504}', 504),
    ],
)
def test_stream_error_chunks_pass_through_and_are_reported(tr: OpenAIToOpenAI, event: bytes, status: int) -> None:
    first = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'  # noqa: E501
    stream = tr.stream("chat", {"stream": True})
    assert stream.feed(first) == first
    assert stream.upstream_error is None
    assert stream.feed(event + b"\n\n") == event + b"\n\n"
    assert stream.upstream_error is not None
    assert stream.upstream_error[0] == status
    assert stream.upstream_error[1]["error"]["message"].endswith(json.loads(event[6:]).get("message") or "memory")


@pytest.mark.parametrize("include_usage", [False, True])
def test_sdk_consumes_the_stream(
    tr: OpenAIToOpenAI,
    fixture_bytes: Callable[[str], bytes],
    feed_all: Callable[[StreamTranslator, list[bytes]], bytes],
    openai_client: Callable[..., openai.OpenAI],
    include_usage: bool,
) -> None:
    upstream = fixture_bytes("openai_chat_stream_tools.sse")

    def handler(request: httpx2.Request) -> httpx2.Response:
        client_body = json.loads(request.content)
        up = tr.request("chat", client_body, "gpt-4o-2024-08-06")
        assert up.body["stream_options"]["include_usage"] is True
        stream = tr.stream("chat", client_body)
        out = feed_all(stream, [upstream[i : i + 5] for i in range(0, len(upstream), 5)])
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=out)

    client = openai_client(handler)
    kwargs: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Weather and time in Paris?"}], stream=True, **kwargs
        )
    )
    arguments: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
    assert json.loads(arguments[0]) == {"location": "Paris, France"}
    assert json.loads(arguments[1]) == {"timezone": "Europe/Paris"}
    usage_chunks = [c for c in chunks if not c.choices]
    if include_usage:
        assert len(usage_chunks) == 1
        assert usage_chunks[0].usage is not None
        assert usage_chunks[0].usage.total_tokens == 132
    else:
        assert usage_chunks == []
