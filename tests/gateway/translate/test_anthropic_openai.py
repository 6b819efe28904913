"""Anthropic Messages client -> OpenAI-compatible upstream: requests, responses, errors and SSE re-framing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from newapi_gateway.translate import AnthropicToOpenAI, get_translator
from newapi_gateway.translate.base import StreamTranslator, TranslationError, UnsupportedOperation, Usage

Chunker = Callable[[bytes], tuple[bytes, list[bytes]]]
Events = Callable[[bytes], list[tuple[str | None, str]]]

EVENT = TypeAdapter(RawMessageStreamEvent)
JPEG = (
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP////////////////////////////////////////////////////////"
    "//////////////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQABPxA="
)


@pytest.fixture
def tr() -> AnthropicToOpenAI:
    t = get_translator("anthropic", "openai")
    assert isinstance(t, AnthropicToOpenAI)
    return t


# ------------------------------------------------------------------------------------------------
# requests
# ------------------------------------------------------------------------------------------------


def test_agent_style_request(tr: AnthropicToOpenAI) -> None:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Work in /repo."},
        ],
        "messages": [
            {"role": "user", "content": "List the files."},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "I should run ls.", "signature": "EqQBCgIYAh"},
                    {"type": "text", "text": "Running ls."},
                    {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {"command": "ls"}},
                    {"type": "tool_use", "id": "toolu_02", "name": "Read", "input": {"path": "README.md"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "README.md\nsrc"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_02",
                        "content": [{"type": "text", "text": "No such file"}],
                        "is_error": True,
                    },
                    {"type": "text", "text": "<system-reminder>be careful</system-reminder>"},
                    {"type": "text", "text": "What is in this picture?", "cache_control": {"type": "ephemeral"}},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": JPEG}},
                ],
            },
            {"role": "assistant", "content": "A blank image."},
            {"role": "user", "content": [{"type": "text", "text": "Thanks."}, {"type": "text", "text": "Bye."}]},
        ],
        "tools": [
            {
                "name": "Bash",
                "description": "Run a command",
                "input_schema": {
                    "type": "object",
                    "properties": {"command": {"type": "string"}},
                    "required": ["command"],
                },
                "cache_control": {"type": "ephemeral"},
            },
            {
                "type": "custom",
                "name": "Read",
                "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
            },
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["</answer>"],
        "temperature": 0.3,
        "top_p": 0.95,
        "top_k": 40,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "metadata": {"user_id": "user_abc"},
        "stream": True,
    }
    snapshot = json.dumps(body)
    req = tr.request("messages", body, "Qwen/Qwen2.5-7B-Instruct")
    assert json.dumps(body) == snapshot
    assert (req.path, req.stream, req.headers) == ("/chat/completions", True, {})
    assert req.body == {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "messages": [
            {"role": "system", "content": "You are Claude Code.\nWork in /repo."},
            {"role": "user", "content": "List the files."},
            {
                "role": "assistant",
                "content": "Running ls.",
                "tool_calls": [
                    {
                        "id": "toolu_01",
                        "type": "function",
                        "function": {"name": "Bash", "arguments": '{"command":"ls"}'},
                    },
                    {
                        "id": "toolu_02",
                        "type": "function",
                        "function": {"name": "Read", "arguments": '{"path":"README.md"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01", "content": "README.md\nsrc"},
            {"role": "tool", "tool_call_id": "toolu_02", "content": "Error: No such file"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>be careful</system-reminder>"},
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{JPEG}"}},
                ],
            },
            {"role": "assistant", "content": "A blank image."},
            {"role": "user", "content": "Thanks.\nBye."},
        ],
        "max_tokens": 32000,
        "stop": ["</answer>"],
        "temperature": 0.3,
        "top_p": 0.95,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "Bash",
                    "parameters": {
                        "type": "object",
                        "properties": {"command": {"type": "string"}},
                        "required": ["command"],
                    },
                    "description": "Run a command",
                },
            },
            {
                "type": "function",
                "function": {
                    "name": "Read",
                    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
                },
            },
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "user": "user_abc",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_max_tokens_field_and_output_format() -> None:
    body = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    out = AnthropicToOpenAI(max_tokens_field="max_completion_tokens").request("messages", body, "gpt-5").body
    assert out["max_completion_tokens"] == 100
    assert "max_tokens" not in out
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    out = (
        AnthropicToOpenAI()
        .request("messages", {**body, "output_config": {"format": {"type": "json_schema", "schema": schema}}}, "m")
        .body
    )
    assert out["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert "stream" not in out
    assert "stream_options" not in out


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        ({"type": "tool", "name": "Bash"}, {"type": "function", "function": {"name": "Bash"}}, None),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
        (None, None, None),
    ],
)
def test_tool_choice_mapping(tr: AnthropicToOpenAI, choice: Any, expected: Any, parallel: Any) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
    }
    if choice is not None:
        body["tool_choice"] = choice
    out = tr.request("messages", body, "m").body
    assert out.get("tool_choice") == expected
    assert out.get("parallel_tool_calls") == parallel


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "file_01"}}]}
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [
                                    {
                                        "type": "image",
                                        "source": {"type": "base64", "media_type": "image/jpeg", "data": JPEG},
                                    }
                                ],
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].content[0]",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]},
            "messages[0].content[0].tool_use_id",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}, "tools[0]"),
        ({"tools": [{"name": "Bash"}]}, "tools[0].input_schema"),
        ({"tools": [{"name": "Bash", "input_schema": {}}], "tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        ({"system": [{"type": "image", "source": {}}]}, "system[0]"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"stop_sequences": "END"}, "stop_sequences"),
    ],
)
def test_untranslatable_requests_name_the_field(tr: AnthropicToOpenAI, patch: dict[str, Any], param: str) -> None:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **patch}
    with pytest.raises(TranslationError) as info:
        tr.request("messages", body, "m")
    assert info.value.param == param


@pytest.mark.parametrize("operation", ["chat", "completions", "embeddings"])
def test_openai_operations_are_unsupported(tr: AnthropicToOpenAI, operation: Any) -> None:
    with pytest.raises(UnsupportedOperation):
        tr.request(operation, {"model": "m"}, "m")


# ------------------------------------------------------------------------------------------------
# responses
# ------------------------------------------------------------------------------------------------


def test_text_response(tr: AnthropicToOpenAI, fixture_json: Callable[[str], dict[str, Any]]) -> None:
    out = tr.response("messages", 200, fixture_json("openai_chat_completion.json"))
    assert out.body == {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4o-2024-08-06",
        "content": [
            {
                "type": "text",
                "text": "The image shows a wooden boardwalk path running through a lush green field or meadow.",
            }
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 93, "output_tokens": 46, "cache_read_input_tokens": 1024},
    }
    assert out.usage == Usage(1117, 46, True, cache_read_tokens=1024)
    Message.model_validate(out.body, strict=True)


def test_tool_calls_response(tr: AnthropicToOpenAI, fixture_json: Callable[[str], dict[str, Any]]) -> None:
    out = tr.response("messages", 200, fixture_json("openai_chat_completion_tools.json"))
    message = Message.model_validate(out.body, strict=True)
    assert message.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "id", None), getattr(b, "input", None)) for b in message.content] == [
        ("tool_use", "call_abc123", {"location": "Boston, MA"}),
        ("tool_use", "call_def456", {"_raw_arguments": "not json"}),
    ]
    assert out.body["usage"] == {"input_tokens": 82, "output_tokens": 17}


def test_vllm_stop_string_becomes_stop_sequence(
    tr: AnthropicToOpenAI, fixture_json: Callable[[str], dict[str, Any]]
) -> None:
    out = tr.response("messages", 200, fixture_json("vllm_chat_completion.json"))
    assert (out.body["stop_reason"], out.body["stop_sequence"]) == ("stop_sequence", "4")
    assert out.body["content"] == [{"type": "text", "text": "Counting: 1, 2, 3"}]
    assert out.usage == Usage(20, 8, True)


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_finish_reason_mapping(tr: AnthropicToOpenAI, finish: str | None, stop: str) -> None:
    body = {
        "id": "c",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": finish}],
    }
    out = tr.response("messages", 200, body)
    assert out.body["stop_reason"] == stop
    assert out.body["content"] == []
    assert out.usage == Usage()
    Message.model_validate(out.body, strict=True)


def test_sdk_parses_translated_response(
    tr: AnthropicToOpenAI,
    fixture_json: Callable[[str], dict[str, Any]],
    anthropic_client: Callable[..., anthropic.Anthropic],
) -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/messages"
        sent.append(tr.request("messages", json.loads(request.content), "gpt-4o-2024-08-06").body)
        out = tr.response_bytes("messages", 200, json.dumps(fixture_json("openai_chat_completion.json")).encode())
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=out.body)

    message = anthropic_client(handler).messages.create(
        model="gateway-gpt", max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "Describe"}]
    )
    assert message.usage.input_tokens == 93
    assert message.usage.cache_read_input_tokens == 1024
    assert sent[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent[0]["max_tokens"] == 64


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "client", "etype", "exc"),
    [
        (
            400,
            {"error": {"message": "bad", "type": "invalid_request_error", "param": "x", "code": None}},
            400,
            "invalid_request_error",
            anthropic.BadRequestError,
        ),
        (
            400,
            {"object": "error", "message": "bad", "type": "BadRequestError", "param": None, "code": 400},
            400,
            "invalid_request_error",
            anthropic.BadRequestError,
        ),
        (
            401,
            {"error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}},
            401,
            "authentication_error",
            anthropic.AuthenticationError,
        ),
        (
            403,
            {"error": {"message": "bad", "type": "permission_error"}},
            403,
            "permission_error",
            anthropic.PermissionDeniedError,
        ),
        (
            404,
            {"error": {"message": "bad", "type": "invalid_request_error", "code": "model_not_found"}},
            404,
            "not_found_error",
            anthropic.NotFoundError,
        ),
        (413, None, 413, "request_too_large", anthropic.RequestTooLargeError),
        (
            429,
            {"error": {"message": "bad", "type": "requests", "code": "rate_limit_exceeded"}},
            429,
            "rate_limit_error",
            anthropic.RateLimitError,
        ),
        (500, {"error": {"message": "bad", "type": "server_error"}}, 502, "api_error", anthropic.InternalServerError),
        (503, None, 529, "overloaded_error", anthropic.OverloadedError),
        (504, None, 504, "timeout_error", anthropic.GatewayTimeoutError),
    ],
)
def test_openai_errors_become_anthropic_errors(
    tr: AnthropicToOpenAI,
    anthropic_client: Callable[..., anthropic.Anthropic],
    status: int,
    body: dict[str, Any] | None,
    client: int,
    etype: str,
    exc: type[Exception],
) -> None:
    code, out = tr.error(status, body, json.dumps(body) if body else "bad")
    assert code == client
    assert out == {"type": "error", "error": {"type": etype, "message": out["error"]["message"]}}
    assert out["error"]["message"].endswith("bad")

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(code, headers={"content-type": "application/json"}, content=json.dumps(out).encode())

    with pytest.raises(exc):
        anthropic_client(handler).messages.create(
            model="gateway-gpt", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )


# ------------------------------------------------------------------------------------------------
# streams
# ------------------------------------------------------------------------------------------------

STREAMS = {
    "openai_chat_stream.sse": Usage(19, 17, True),
    "openai_chat_stream_tools.sse": Usage(84, 48, True, cache_read_tokens=64),
    "vllm_chat_stream.sse": Usage(31, 5, True),
    "vllm_chat_stream_tools.sse": Usage(412, 35, True, cache_read_tokens=256),
}


def translate(tr: AnthropicToOpenAI, pieces: list[bytes]) -> tuple[bytes, StreamTranslator]:
    stream = tr.stream("messages", {"model": "gateway-gpt", "max_tokens": 100, "messages": [], "stream": True})
    out = b"".join(stream.feed(p) for p in pieces) + stream.finish()
    return out, stream


def events_of(out: bytes, parse_sse: Events) -> list[dict[str, Any]]:
    events = []
    for name, data in parse_sse(out):
        obj = json.loads(data)
        assert name == obj["type"], "the SSE event name must equal the data's type"
        if name != "error":
            EVENT.validate_python(obj, strict=True)
        events.append(obj)
    return events


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_stream_output_does_not_depend_on_chunking(
    tr: AnthropicToOpenAI, fixture_bytes: Callable[[str], bytes], chunker: Chunker, parse_sse: Events, name: str
) -> None:
    reference, _ = translate(tr, [fixture_bytes(name)])
    _, pieces = chunker(fixture_bytes(name))
    out, stream = translate(tr, pieces)
    assert out == reference
    assert stream.usage == STREAMS[name]
    assert stream.upstream_error is None
    events = events_of(out, parse_sse)
    assert events[0]["type"] == "message_start"
    assert [e["type"] for e in events[-2:]] == ["message_delta", "message_stop"]
    usage = events[-2]["usage"]
    expected = STREAMS[name]
    assert usage["input_tokens"] + usage.get("cache_read_input_tokens", 0) == expected.input_tokens
    assert usage["output_tokens"] == expected.output_tokens


def test_text_stream_events(tr: AnthropicToOpenAI, fixture_bytes: Callable[[str], bytes], parse_sse: Events) -> None:
    out, _ = translate(tr, [fixture_bytes("openai_chat_stream.sse")])
    events = events_of(out, parse_sse)
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"]["id"] == "chatcmpl-C9mVcD1fWm3dW5Xj2kq7a0bWz1Y3x"
    assert events[0]["message"]["model"] == "gpt-4o-mini-2024-07-18"
    assert events[1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == 'Bonjour ! Ça va ? 👋 How can I help with "usage" today?'
    assert events[-2] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": 19, "output_tokens": 17},
    }


def test_vllm_tool_stream_events(
    tr: AnthropicToOpenAI, fixture_bytes: Callable[[str], bytes], parse_sse: Events
) -> None:
    out, _ = translate(tr, [fixture_bytes("vllm_chat_stream_tools.sse")])
    events = events_of(out, parse_sse)
    starts = [e for e in events if e["type"] == "content_block_start"]
    assert starts == [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "chatcmpl-tool-3f9a1c7e5b2d4e6f8a0b",
                "name": "read_file",
                "input": {},
            },
        },
    ]
    stops = [e["index"] for e in events if e["type"] == "content_block_stop"]
    assert stops == [0, 1]
    partial = "".join(
        e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta" and e["index"] == 1
    )
    assert json.loads(partial) == {"path": "src/main.py"}
    assert events[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[-2]["usage"] == {"input_tokens": 156, "output_tokens": 35, "cache_read_input_tokens": 256}


def test_vllm_stop_string_in_stream(
    tr: AnthropicToOpenAI, fixture_bytes: Callable[[str], bytes], parse_sse: Events
) -> None:
    out, _ = translate(tr, [fixture_bytes("vllm_chat_stream.sse")])
    assert events_of(out, parse_sse)[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


def test_error_chunk_before_content_leaves_only_the_error(tr: AnthropicToOpenAI, parse_sse: Events) -> None:
    role = b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n'  # noqa: E501
    error = b'data: {"error":{"message":"The engine is currently overloaded","type":"server_error","param":null,"code":503}}\n\n'  # noqa: E501
    stream = tr.stream("messages", {"model": "m"})
    assert stream.feed(role) == b""
    out = stream.feed(error) + stream.finish()
    assert stream.upstream_error is not None
    assert stream.upstream_error[0] == 529
    assert [(name, json.loads(data)) for name, data in parse_sse(out)] == [("error", stream.upstream_error[1])]
    assert stream.upstream_error[1]["error"]["type"] == "overloaded_error"


def test_truncated_and_unterminated_streams(
    tr: AnthropicToOpenAI, fixture_bytes: Callable[[str], bytes], parse_sse: Events
) -> None:
    events = fixture_bytes("openai_chat_stream.sse").split(b"\n\n")
    out, stream = translate(tr, [b"\n\n".join(events[:3]) + b"\n\n"])
    assert stream.upstream_error == (
        502,
        {
            "type": "error",
            "error": {"type": "api_error", "message": "the upstream stream ended before the message was complete"},
        },
    )
    assert parse_sse(out)[-1][0] == "error"
    # finish_reason and usage arrived, [DONE] did not: complete
    out, stream = translate(tr, [b"\n\n".join(events[:6]) + b"\n\n"])
    assert stream.upstream_error is None
    assert [e["type"] for e in events_of(out, parse_sse)][-2:] == ["message_delta", "message_stop"]
    # nothing at all
    out, stream = translate(tr, [])
    assert stream.upstream_error is not None
    assert parse_sse(out)[0][0] == "error"


@pytest.mark.parametrize("name", ["openai_chat_stream.sse", "openai_chat_stream_tools.sse"])
def test_sdk_accumulates_translated_stream(
    tr: AnthropicToOpenAI,
    fixture_bytes: Callable[[str], bytes],
    anthropic_client: Callable[..., anthropic.Anthropic],
    name: str,
) -> None:
    upstream = fixture_bytes(name)

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        assert tr.request("messages", body, "gpt-4o").body["stream_options"] == {"include_usage": True}
        stream = tr.stream("messages", body)
        out = b"".join(stream.feed(upstream[i : i + 13]) for i in range(0, len(upstream), 13)) + stream.finish()
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=out)

    with anthropic_client(handler).messages.stream(
        model="gateway-gpt",
        max_tokens=256,
        messages=[{"role": "user", "content": "Weather and time in Paris?"}],
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
    ) as stream:
        message = stream.get_final_message()
    if name == "openai_chat_stream.sse":
        assert message.content[0].type == "text"
        assert message.content[0].text == 'Bonjour ! Ça va ? 👋 How can I help with "usage" today?'
        assert (message.usage.input_tokens, message.usage.output_tokens, message.stop_reason) == (19, 17, "end_turn")
    else:
        tools = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
        assert tools == [("get_weather", {"location": "Paris, France"}), ("get_time", {"timezone": "Europe/Paris"})]
        assert message.stop_reason == "tool_use"
        assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (20, 64)


def test_sdk_raises_on_translated_stream_error(
    tr: AnthropicToOpenAI, anthropic_client: Callable[..., anthropic.Anthropic]
) -> None:
    upstream = b'data: {"object":"error","message":"CUDA error: an illegal memory access","type":"InternalServerError","param":null,"code":500}\n\n'  # noqa: E501

    def handler(request: httpx2.Request) -> httpx2.Response:
        stream = tr.stream("messages", json.loads(request.content))
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=stream.feed(upstream) + stream.finish()
        )

    with pytest.raises(anthropic.APIStatusError, match="illegal memory access"):
        list(
            anthropic_client(handler).messages.create(
                model="gateway-gpt", max_tokens=5, messages=[{"role": "user", "content": "x"}], stream=True
            )
        )
