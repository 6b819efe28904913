"""openai chat client -> Anthropic Messages upstream: requests, responses, errors and SSE re-framing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from newapi_gateway.translate import OpenAIToAnthropic, get_translator
from newapi_gateway.translate.base import StreamTranslator, TranslationError, UnsupportedOperation, Usage
from newapi_gateway.translate.errors import is_failover_status

Chunker = Callable[[bytes], tuple[bytes, list[bytes]]]
Events = Callable[[bytes], list[tuple[str | None, str]]]

NOW = 1_756_400_000.7
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.fixture
def tr() -> OpenAIToAnthropic:
    return OpenAIToAnthropic(clock=lambda: NOW)


def test_registry_returns_this_pair() -> None:
    t = get_translator("openai", "anthropic")
    assert isinstance(t, OpenAIToAnthropic)
    assert (t.client_format, t.upstream_format, t.default_max_tokens) == ("openai", "anthropic", 4096)
    with pytest.raises(ValueError, match="no translator"):
        get_translator("openai", "gemini")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# requests
# ------------------------------------------------------------------------------------------------


def test_full_conversation_request(tr: OpenAIToAnthropic) -> None:
    body = {
        "model": "claude",
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these images, and what's the weather in Paris?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18°C, cloudy"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "14:05"}]},
            {"role": "user", "content": "Thanks! Summarise."},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                    "strict": True,
                },
            },
            {"type": "function", "function": {"name": "get_time"}},
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stop": "\n\nHuman:",
        "max_completion_tokens": 300,
        "max_tokens": 999,
        "temperature": 1.5,
        "top_p": 0.9,
        "user": "customer-42",
        "presence_penalty": 0.5,
        "seed": 7,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    snapshot = json.dumps(body)
    req = tr.request("chat", body, "claude-sonnet-4-5-20250929")
    assert json.dumps(body) == snapshot
    assert req.path == "/v1/messages"
    assert req.headers == {"anthropic-version": "2023-06-01"}
    assert req.stream is True
    assert req.body == {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 300,
        "system": [
            {"type": "text", "text": "You are a weather bot."},
            {"type": "text", "text": "Answer in English."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these images, and what's the weather in Paris?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18°C, cloudy"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "14:05"}]},
                    {"type": "text", "text": "Thanks! Summarise."},
                ],
            },
        ],
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 1.0,
        "tools": [
            {
                "name": "get_weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "description": "Current weather for a city",
            },
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "customer-42"},
        "stream": True,
    }


def test_max_tokens_defaults_and_sources() -> None:
    simple = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert OpenAIToAnthropic().request("chat", simple, "c").body["max_tokens"] == 4096
    assert OpenAIToAnthropic(default_max_tokens=8192).request("chat", simple, "c").body["max_tokens"] == 8192
    assert OpenAIToAnthropic().request("chat", {**simple, "max_tokens": 12}, "c").body["max_tokens"] == 12
    with pytest.raises(ValueError, match="default_max_tokens"):
        OpenAIToAnthropic(default_max_tokens=0)


def test_sampling_and_format_options(tr: OpenAIToAnthropic) -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    body = tr.request("chat", {**base, "top_p": 0.5, "stop": ["END", "STOP"]}, "c").body
    assert (body["top_p"], body["stop_sequences"], "temperature" in body) == (0.5, ["END", "STOP"], False)
    assert tr.request("chat", {**base, "temperature": -1}, "c").body["temperature"] == 0.0
    assert tr.request("chat", {**base, "temperature": 0}, "c").body["temperature"] == 0.0
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    body = tr.request("chat", {**base, "response_format": fmt}, "c").body
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    body = tr.request("chat", {**base, "response_format": {"type": "json_object"}}, "c").body
    assert "output_config" not in body
    assert "response_format" not in body
    assert tr.request("chat", base, "c").stream is False


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("none", False, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("auto", True, {"type": "auto"}),
        (None, None, None),
    ],
)
def test_tool_choice_mapping(tr: OpenAIToAnthropic, choice: Any, parallel: Any, expected: Any) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    }
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert tr.request("chat", body, "c").body.get("tool_choice") == expected


def test_tool_choice_without_tools_is_dropped(tr: OpenAIToAnthropic) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"}
    assert "tool_choice" not in tr.request("chat", body, "c").body


def test_schema_without_type_gets_object_and_empty_text_is_dropped(tr: OpenAIToAnthropic) -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "user", "content": "again"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"properties": {}}}}],
    }
    out = tr.request("chat", body, "c").body
    assert out["tools"][0]["input_schema"] == {"type": "object", "properties": {}}
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}]}
    ]


def test_tool_results_are_moved_before_text_in_a_turn(tr: OpenAIToAnthropic) -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f"}}]},
            {"role": "user", "content": "also this"},
            {"role": "tool", "tool_call_id": "t1", "content": ""},
        ],
    }
    out = tr.request("chat", body, "c").body
    assert out["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t1"}, {"type": "text", "text": "also this"}],
    }


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"n": 2}, "n"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "narrator", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0]"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"tools": [{"type": "custom", "custom": {"name": "grammar"}}]}, "tools[0]"),
        ({"tool_choice": "sometimes", "tools": [{"type": "function", "function": {"name": "f"}}]}, "tool_choice"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": "many"}, "max_completion_tokens"),
        ({"stop": ["ok", 3]}, "stop"),
    ],
)
def test_untranslatable_requests_name_the_field(tr: OpenAIToAnthropic, patch: dict[str, Any], param: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **patch}
    with pytest.raises(TranslationError) as info:
        tr.request("chat", body, "c")
    assert info.value.param == param
    assert str(info.value)


@pytest.mark.parametrize("operation", ["completions", "embeddings", "messages"])
def test_other_operations_are_unsupported(tr: OpenAIToAnthropic, operation: Any) -> None:
    with pytest.raises(UnsupportedOperation, match="chat completions only"):
        tr.request(operation, {"model": "m", "prompt": "x"}, "c")


# ------------------------------------------------------------------------------------------------
# responses
# ------------------------------------------------------------------------------------------------


def test_text_response(tr: OpenAIToAnthropic, fixture_json: Callable[[str], dict[str, Any]]) -> None:
    out = tr.response("chat", 200, fixture_json("anthropic_message.json"))
    assert out.usage == Usage(2095 + 1024, 503, True, cache_read_tokens=1024)
    assert out.body == {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "object": "chat.completion",
        "created": 1_756_400_000,
        "model": "claude-sonnet-4-5-20250929",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi! My name is Claude.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 3119,
            "completion_tokens": 503,
            "total_tokens": 3622,
            "prompt_tokens_details": {"cached_tokens": 1024},
        },
    }
    ChatCompletion.model_validate(out.body, strict=True)
    fast = tr.response_bytes("chat", 200, json.dumps(fixture_json("anthropic_message.json")).encode())
    assert json.loads(fast.body) == out.body
    assert fast.usage == out.usage


def test_tool_use_response(tr: OpenAIToAnthropic, fixture_json: Callable[[str], dict[str, Any]]) -> None:
    out = tr.response("chat", 200, fixture_json("anthropic_message_tool_use.json"))
    completion = ChatCompletion.model_validate(out.body, strict=True)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll check the current weather in San Francisco for you."
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("toolu_01A09q90qw90lq917835lq9", "get_weather", {"location": "San Francisco, CA", "unit": "celsius"})
    ]
    assert out.usage == Usage(384, 92, True)


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("pause_turn", "stop"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        (None, "stop"),
    ],
)
def test_stop_reason_mapping(tr: OpenAIToAnthropic, stop: str | None, finish: str) -> None:
    body: dict[str, Any] = {"id": "msg_1", "type": "message", "role": "assistant", "model": "c", "content": []}
    body["stop_reason"] = stop
    out = tr.response("chat", 200, body)
    assert out.body["choices"][0]["finish_reason"] == finish
    assert out.body["choices"][0]["message"]["content"] is None
    assert out.usage == Usage()


def test_sdk_parses_translated_response(
    tr: OpenAIToAnthropic, fixture_json: Callable[[str], dict[str, Any]], openai_client: Callable[..., openai.OpenAI]
) -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(tr.request("chat", json.loads(request.content), "claude-sonnet-4-5-20250929").body)
        out = tr.response_bytes("chat", 200, json.dumps(fixture_json("anthropic_message_tool_use.json")).encode())
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=out.body)

    completion = openai_client(handler).chat.completions.create(
        model="claude",
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Weather in SF?"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        tool_choice="auto",
        max_tokens=200,
    )
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 476
    assert sent[0]["system"] == [{"type": "text", "text": "Be terse."}]
    assert sent[0]["tool_choice"] == {"type": "auto"}
    assert sent[0]["max_tokens"] == 200


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "etype", "client", "openai_type", "exc"),
    [
        (400, "invalid_request_error", 400, "invalid_request_error", openai.BadRequestError),
        (401, "authentication_error", 401, "authentication_error", openai.AuthenticationError),
        (403, "permission_error", 403, "permission_error", openai.PermissionDeniedError),
        (404, "not_found_error", 404, "not_found_error", openai.NotFoundError),
        (413, "request_too_large", 413, "invalid_request_error", openai.APIStatusError),
        (429, "rate_limit_error", 429, "rate_limit_exceeded", openai.RateLimitError),
        (500, "api_error", 502, "upstream_error", openai.InternalServerError),
        (529, "overloaded_error", 503, "upstream_overloaded", openai.InternalServerError),
    ],
)
def test_anthropic_errors_become_openai_errors(
    tr: OpenAIToAnthropic,
    openai_client: Callable[..., openai.OpenAI],
    status: int,
    etype: str,
    client: int,
    openai_type: str,
    exc: type[Exception],
) -> None:
    upstream = {"type": "error", "error": {"type": etype, "message": "Something specific"}, "request_id": "req_01"}
    code, body = tr.error(status, upstream, json.dumps(upstream))
    assert code == client
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == openai_type
    assert body["error"]["message"].endswith("Something specific")
    if status == 413:
        assert body["error"]["code"] == "request_too_large"
    if status == 429:
        assert body["error"]["code"] == "rate_limit_exceeded"

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(code, headers={"content-type": "application/json"}, content=json.dumps(body).encode())

    with pytest.raises(exc):
        openai_client(handler).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


# ------------------------------------------------------------------------------------------------
# streams
# ------------------------------------------------------------------------------------------------


def translate(
    tr: OpenAIToAnthropic, pieces: list[bytes], include_usage: bool = False
) -> tuple[bytes, StreamTranslator]:
    request: dict[str, Any] = {"model": "claude", "messages": [], "stream": True}
    if include_usage:
        request["stream_options"] = {"include_usage": True}
    stream = tr.stream("chat", request)
    out = b"".join(stream.feed(p) for p in pieces) + stream.finish()
    return out, stream


def chunks_of(out: bytes, parse_sse: Events) -> tuple[list[ChatCompletionChunk], list[str]]:
    events = parse_sse(out)
    assert all(name is None for name, _ in events)
    datas = [data for _, data in events]
    chunks = [ChatCompletionChunk.model_validate(json.loads(d), strict=True) for d in datas if d != "[DONE]"]
    return chunks, datas


@pytest.mark.parametrize(
    ("name", "usage"),
    [
        ("anthropic_stream_text.sse", Usage(2173, 15, True, cache_read_tokens=2048, cache_write_tokens=100)),
        ("anthropic_stream_tool_use.sse", Usage(472, 89, True)),
        ("anthropic_stream_thinking.sse", Usage(40, 64, True)),
    ],
)
def test_stream_output_does_not_depend_on_chunking(
    tr: OpenAIToAnthropic, fixture_bytes: Callable[[str], bytes], chunker: Chunker, name: str, usage: Usage
) -> None:
    reference, _ = translate(tr, [fixture_bytes(name)])
    _, pieces = chunker(fixture_bytes(name))
    out, stream = translate(tr, pieces)
    assert out == reference
    assert stream.usage == usage
    assert stream.upstream_error is None


def test_text_stream(tr: OpenAIToAnthropic, fixture_bytes: Callable[[str], bytes], parse_sse: Events) -> None:
    out, _ = translate(tr, [fixture_bytes("anthropic_stream_text.sse")])
    chunks, datas = chunks_of(out, parse_sse)
    assert datas[-1] == "[DONE]"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert all(c.id == "msg_01XFDUDYJgAACzvnptvVoYEL" and c.created == 1_756_400_000 for c in chunks)
    assert all(c.model == "claude-sonnet-4-5-20250929" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == 'Bonjour ! Ça va ? 👋 Here is some "usage" advice.'
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert all(c.usage is None for c in chunks)
    assert b'"usage"' not in out.replace(b'\\"usage\\"', b"")  # no usage key unless asked


def test_text_stream_with_usage(
    tr: OpenAIToAnthropic, fixture_bytes: Callable[[str], bytes], parse_sse: Events
) -> None:
    out, _ = translate(tr, [fixture_bytes("anthropic_stream_text.sse")], include_usage=True)
    chunks, datas = chunks_of(out, parse_sse)
    assert datas[-1] == "[DONE]"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (2173, 15, 2188)
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 2048
    assert all('"usage":null' in d for d in datas[:-2])


def test_tool_use_stream(tr: OpenAIToAnthropic, fixture_bytes: Callable[[str], bytes], parse_sse: Events) -> None:
    out, _ = translate(tr, [fixture_bytes("anthropic_stream_tool_use.sse")])
    chunks, _ = chunks_of(out, parse_sse)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "Okay, let me check the weather for San Francisco, CA:"
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for call in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            if call.id:
                assert not entry["id"], "id only on the first delta of a call"
                entry["id"] = call.id
                assert call.type == "function"
                assert call.function is not None
                assert call.function.name
                entry["name"] = call.function.name
            elif call.function is not None:
                assert call.function.name is None
            entry["arguments"] += (call.function.arguments or "") if call.function else ""
    assert {i: (c["id"], c["name"], json.loads(c["arguments"])) for i, c in calls.items()} == {
        0: ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {"location": "San Francisco, CA", "unit": "fahrenheit"}),
        1: ("toolu_01Ab2Cd3Ef4Gh5Ij6Kl7Mn8O", "get_time", {"timezone": "America/Los_Angeles"}),
    }
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_thinking_is_not_forwarded(
    tr: OpenAIToAnthropic, fixture_bytes: Callable[[str], bytes], parse_sse: Events
) -> None:
    out, _ = translate(tr, [fixture_bytes("anthropic_stream_thinking.sse")])
    chunks, _ = chunks_of(out, parse_sse)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Autumn moonlight"
    assert b"haiku" not in out
    assert b"signature" not in out
    assert chunks[-1].choices[0].finish_reason == "length"


def test_error_before_content_leaves_only_the_error(
    tr: OpenAIToAnthropic, fixture_bytes: Callable[[str], bytes], chunker: Chunker, parse_sse: Events
) -> None:
    _, pieces = chunker(fixture_bytes("anthropic_stream_overloaded.sse"))
    out, stream = translate(tr, pieces)
    assert stream.upstream_error is not None
    status, body = stream.upstream_error
    assert status == 503
    assert is_failover_status(529)
    assert body["error"]["type"] == "upstream_overloaded"
    assert parse_sse(out) == [(None, json.dumps(body, ensure_ascii=False, separators=(",", ":")))]
    assert stream.usage == Usage(12, 1, True)


def test_error_after_content_and_truncated_streams(
    tr: OpenAIToAnthropic, fixture_bytes: Callable[[str], bytes]
) -> None:
    events = fixture_bytes("anthropic_stream_text.sse").split(b"\n\n")
    # upstream dies after the first text delta: content so far, then an OpenAI error chunk, no [DONE]
    out, stream = translate(tr, [b"\n\n".join(events[:4]) + b"\n\n"])
    assert b"Bonjour" in out
    assert not out.endswith(b"[DONE]\n\n")
    assert stream.upstream_error is not None
    assert stream.upstream_error[0] == 502
    assert out.endswith(
        b'data: {"error":{"message":"the upstream stream ended before the message was complete",'
        b'"type":"upstream_error","param":null,"code":"upstream_error"}}\n\n'
    )
    # message_delta arrived but message_stop was lost: the answer is complete
    out, stream = translate(tr, [b"\n\n".join(events[:7]) + b"\n\n"])
    assert out.endswith(b"data: [DONE]\n\n")
    assert stream.upstream_error is None
    # an error event in the middle of the content
    error = b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"Internal server error"}}\n\n'
    out, stream = translate(tr, [b"\n\n".join(events[:4]) + b"\n\n" + error + b"\n\n".join(events[4:])])
    assert stream.upstream_error is not None
    assert stream.upstream_error[0] == 502
    assert out.endswith(b'"type":"upstream_error","param":null,"code":"upstream_error"}}\n\n')
    assert b"[DONE]" not in out


@pytest.mark.parametrize("name", ["anthropic_stream_text.sse", "anthropic_stream_tool_use.sse"])
def test_sdk_stream_helper_accumulates_translated_stream(
    tr: OpenAIToAnthropic,
    fixture_bytes: Callable[[str], bytes],
    openai_client: Callable[..., openai.OpenAI],
    name: str,
) -> None:
    upstream = fixture_bytes(name)

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        req = tr.request("chat", body, "claude-sonnet-4-5-20250929")
        assert req.stream
        assert req.body["stream"] is True
        stream = tr.stream("chat", body)
        out = b"".join(stream.feed(upstream[i : i + 9]) for i in range(0, len(upstream), 9)) + stream.finish()
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=out)

    with openai_client(handler).chat.completions.stream(
        model="claude",
        messages=[{"role": "user", "content": "Weather in SF?"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        stream_options={"include_usage": True},
    ) as stream:
        completion = stream.get_final_completion()
    message = completion.choices[0].message
    if name == "anthropic_stream_text.sse":
        assert message.content == 'Bonjour ! Ça va ? 👋 Here is some "usage" advice.'
        assert completion.usage is not None
        assert completion.usage.prompt_tokens == 2173
    else:
        assert [c.function.name for c in message.tool_calls or []] == ["get_weather", "get_time"]
        assert completion.choices[0].finish_reason == "tool_calls"


def test_sdk_raises_on_translated_stream_error(
    tr: OpenAIToAnthropic, fixture_bytes: Callable[[str], bytes], openai_client: Callable[..., openai.OpenAI]
) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        stream = tr.stream("chat", json.loads(request.content))
        out = stream.feed(fixture_bytes("anthropic_stream_overloaded.sse")) + stream.finish()
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=out)

    with pytest.raises(openai.APIError, match="Overloaded"):
        list(
            openai_client(handler).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}], stream=True
            )
        )
