"""The demo upstream speaks the OpenAI and Anthropic wire formats: proven with the official SDKs
(sync and async, stream and non-stream, typed errors) against the real process, plus its failure
modes over raw HTTP and the pure parts (behaviour specs, token rule) directly."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest

from newapi_gateway.demo_upstream import DemoUpstreamError, DemoUpstreamProcess, content
from newapi_gateway.demo_upstream import behavior as bh
from tests.gateway.conftest import StartDemoUpstream

WEATHER_TOOL_OPENAI: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}
WEATHER_TOOL_ANTHROPIC: dict[str, Any] = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": WEATHER_TOOL_OPENAI["function"]["parameters"],
}
WEATHER_ARGS = {"city": "demo", "unit": "celsius", "days": 1}


def oai(up: DemoUpstreamProcess, key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=up.openai_base_url, api_key=key, max_retries=0, timeout=20)


def aoai(up: DemoUpstreamProcess, key: str = "sk-test") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=up.openai_base_url, api_key=key, max_retries=0, timeout=20)


def ant(up: DemoUpstreamProcess, key: str = "sk-ant-test") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=up.anthropic_base_url, api_key=key, max_retries=0, timeout=20)


def aant(up: DemoUpstreamProcess, key: str = "sk-ant-test") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=up.anthropic_base_url, api_key=key, max_retries=0, timeout=20)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# --------------------------------------------------------------------------------------------
# OpenAI format through the openai SDK
# --------------------------------------------------------------------------------------------


def test_openai_chat_non_stream(demo_upstream: DemoUpstreamProcess) -> None:
    client = oai(demo_upstream)
    raw = client.chat.completions.with_raw_response.create(
        model="demo-chat",
        messages=[{"role": "system", "content": "be brief"}, *user("hello   wide  world")],
    )
    result = raw.parse()
    assert raw.headers["x-demo-upstream"] == "shared"
    assert raw.headers["x-request-id"].startswith("req_shared-")
    assert result.object == "chat.completion"
    assert result.id.startswith("chatcmpl-shared-")
    assert result.model == "demo-chat"
    assert result.system_fingerprint == "fp_shared"
    choice = result.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: hello wide world"
    assert choice.finish_reason == "stop"
    assert result.usage is not None
    # 2 system words + 3 user words; 4 reply words.
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (5, 4, 9)


async def test_openai_chat_stream_with_usage_async(demo_upstream: DemoUpstreamProcess) -> None:
    client = aoai(demo_upstream)
    stream = await client.chat.completions.create(
        model="demo-chat", messages=user("one two three"), stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert [c.choices[0].delta.content for c in content_chunks] == ["echo:", " one", " two", " three"]
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (3, 4)
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_chat_stream_without_usage_has_no_usage_chunk(demo_upstream: DemoUpstreamProcess) -> None:
    with httpx.stream(
        "POST",
        demo_upstream.openai_base_url + "/chat/completions",
        json={"model": "m", "messages": user("hi"), "stream": True},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.read().decode()
    events = body.split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all("usage" not in c for c in chunks)
    assert all(c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}


def test_openai_max_tokens_truncates_with_length(demo_upstream: DemoUpstreamProcess) -> None:
    result = oai(demo_upstream).chat.completions.create(
        model="m", messages=user("a b c d e f"), max_completion_tokens=3
    )
    assert result.choices[0].message.content == "echo: a b"
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert result.usage.completion_tokens == 3


def test_openai_tool_call_non_stream_and_stream(demo_upstream: DemoUpstreamProcess) -> None:
    client = oai(demo_upstream)
    result = client.chat.completions.create(
        model="m", messages=user("weather please [[demo:tool]]"), tools=[WEATHER_TOOL_OPENAI]
    )
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS
    assert call.id.startswith("call_shared-")

    # Streamed: the arguments arrive in fragments; the tool call comes back once the model has it.
    stream = client.chat.completions.create(
        model="m",
        messages=user("weather please"),
        tools=[WEATHER_TOOL_OPENAI],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    chunks = list(stream)
    fragments = [
        c.choices[0].delta.tool_calls[0].function.arguments
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    ]
    assert len(fragments) > 2
    assert json.loads("".join(fragments)) == WEATHER_ARGS
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_tool_marker_without_tools_answers_text(demo_upstream: DemoUpstreamProcess) -> None:
    result = oai(demo_upstream).chat.completions.create(model="m", messages=user("hi [[demo:tool]]"))
    assert result.choices[0].message.content == "echo: hi"
    assert result.choices[0].finish_reason == "stop"


def test_openai_completions(demo_upstream: DemoUpstreamProcess) -> None:
    client = oai(demo_upstream)
    result = client.completions.create(model="m", prompt="say this")
    assert result.object == "text_completion"
    assert result.choices[0].text == "echo: say this"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (2, 3)
    stream = client.completions.create(
        model="m", prompt="say this", stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: say this"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 5


async def test_openai_embeddings_float_and_base64(demo_upstream: DemoUpstreamProcess) -> None:
    client = aoai(demo_upstream)
    # The SDK asks for base64 by default and decodes it; the float form must carry the same numbers.
    default = await client.embeddings.create(model="demo-embedding", input=["alpha beta", "gamma"])
    floats = await client.embeddings.create(
        model="demo-embedding", input=["alpha beta", "gamma"], encoding_format="float"
    )
    assert len(default.data) == 2
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    assert len(floats.data[0].embedding) == content.DEFAULT_EMBEDDING_DIMENSIONS
    assert abs(sum(x * x for x in floats.data[0].embedding) - 1) < 1e-5
    assert floats.data[0].embedding != floats.data[1].embedding
    assert floats.usage.prompt_tokens == 3
    sized = await client.embeddings.create(model="e", input="alpha beta", dimensions=7)
    assert len(sized.data[0].embedding) == 7
    again = await client.embeddings.create(model="e", input="alpha beta", dimensions=7)
    assert again.data[0].embedding == sized.data[0].embedding


def test_openai_models_list(start_demo_upstream: StartDemoUpstream) -> None:
    up = start_demo_upstream(models=["gpt-a", "gpt-b"])
    assert [m.id for m in oai(up).models.list()] == ["gpt-a", "gpt-b"]
    page = ant(up).models.list()
    assert [m.id for m in page.data] == ["gpt-a", "gpt-b"]


# --------------------------------------------------------------------------------------------
# Anthropic format through the anthropic SDK
# --------------------------------------------------------------------------------------------


def test_anthropic_message_non_stream(demo_upstream: DemoUpstreamProcess) -> None:
    raw = ant(demo_upstream).messages.with_raw_response.create(
        model="demo-claude", max_tokens=100, system="you are terse", messages=user("hello there")
    )
    message = raw.parse()
    assert raw.headers["request-id"].startswith("req_shared-")
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_shared-")
    assert message.model == "demo-claude"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "echo: hello there"
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 3)


def test_anthropic_max_tokens_stop_reason(demo_upstream: DemoUpstreamProcess) -> None:
    message = ant(demo_upstream).messages.create(model="c", max_tokens=2, messages=user("a b c"))
    assert message.content[0].text == "echo: a"
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2


async def test_anthropic_stream_async_event_sequence(demo_upstream: DemoUpstreamProcess) -> None:
    client = aant(demo_upstream)
    stream = await client.messages.create(model="demo-claude", max_tokens=50, messages=user("stream me"), stream=True)
    events = [event async for event in stream]
    types = [e.type for e in events]
    assert types == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the SDK skips ping
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert deltas == ["echo:", " stream", " me"]
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 3

    async with client.messages.stream(model="demo-claude", max_tokens=50, messages=user("stream me")) as helper:
        final = await helper.get_final_message()
    assert final.content[0].text == "echo: stream me"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 3)


def test_anthropic_stream_raw_framing_has_ping(demo_upstream: DemoUpstreamProcess) -> None:
    with httpx.stream(
        "POST",
        demo_upstream.anthropic_base_url + "/v1/messages",
        headers={"anthropic-version": "2023-06-01", "x-api-key": "k"},
        json={"model": "c", "max_tokens": 10, "stream": True, "messages": user("x")},
    ) as response:
        body = response.read().decode()
    blocks = [b for b in body.split("\n\n") if b]
    names = [b.split("\n")[0].removeprefix("event: ") for b in blocks]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    for block in blocks:
        event_line, data_line = block.split("\n")
        assert json.loads(data_line.removeprefix("data: "))["type"] == event_line.removeprefix("event: ")


def test_anthropic_tool_use_non_stream_and_stream(demo_upstream: DemoUpstreamProcess) -> None:
    client = ant(demo_upstream)
    message = client.messages.create(
        model="c", max_tokens=100, messages=user("weather [[demo:tool=get_weather]]"), tools=[WEATHER_TOOL_ANTHROPIC]
    )
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use"]
    block = message.content[1]
    assert block.name == "get_weather"
    assert block.input == WEATHER_ARGS
    assert block.id.startswith("toolu_shared-")

    with client.messages.stream(
        model="c",
        max_tokens=100,
        messages=user("weather"),
        tools=[WEATHER_TOOL_ANTHROPIC],
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    json_deltas = [e for e in events if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    assert len(json_deltas) > 2
    assert final.stop_reason == "tool_use"
    assert final.content[-1].input == WEATHER_ARGS


def test_anthropic_count_tokens(demo_upstream: DemoUpstreamProcess) -> None:
    result = ant(demo_upstream).messages.count_tokens(model="c", system="two words", messages=user("three more words"))
    assert result.input_tokens == 5


# --------------------------------------------------------------------------------------------
# Errors: typed SDK exceptions from faithful bodies and statuses
# --------------------------------------------------------------------------------------------


def test_api_keys_are_checked_in_each_format(start_demo_upstream: StartDemoUpstream) -> None:
    up = start_demo_upstream(name="keyed", api_keys=["sk-right-1234567890"], models=["gpt-x", "claude-x"])
    assert oai(up, "sk-right-1234567890").chat.completions.create(model="gpt-x", messages=user("a")).choices
    with pytest.raises(openai.AuthenticationError) as oerr:
        oai(up, "sk-wrong-abcdefghij").chat.completions.create(model="gpt-x", messages=user("a"))
    assert oerr.value.status_code == 401
    assert oerr.value.code == "invalid_api_key"
    assert oerr.value.type == "invalid_request_error"
    assert "sk-" in oerr.value.message
    assert "ghij" in oerr.value.message
    assert "sk-wrong-abcdefghij" not in oerr.value.message  # masked, like OpenAI does

    assert ant(up, "sk-right-1234567890").messages.create(model="claude-x", max_tokens=5, messages=user("a"))
    with pytest.raises(anthropic.AuthenticationError) as aerr:
        ant(up, "sk-wrong").messages.create(model="claude-x", max_tokens=5, messages=user("a"))
    assert aerr.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": aerr.value.request_id,
    }
    # Missing key entirely.
    r = httpx.post(up.openai_base_url + "/chat/completions", json={"model": "gpt-x", "messages": user("a")})
    assert r.status_code == 401
    assert r.json()["error"]["code"] is None
    assert "didn't provide an API key" in r.json()["error"]["message"]
    r = httpx.post(
        up.url + "/v1/messages",
        headers={"anthropic-version": "2023-06-01"},
        json={"model": "claude-x", "max_tokens": 5, "messages": user("a")},
    )
    assert r.status_code == 401
    assert r.json()["error"]["message"] == "x-api-key header is required"
    # x-api-key is the API's header (the SDK sends Authorization: Bearer, also accepted).
    r = httpx.post(
        up.url + "/v1/messages",
        headers={"anthropic-version": "2023-06-01", "x-api-key": "sk-right-1234567890"},
        json={"model": "claude-x", "max_tokens": 5, "messages": user("a")},
    )
    assert r.status_code == 200
    # The log shows exactly which key arrived.
    keys = [(e["headers"].get("authorization"), e["headers"].get("x-api-key"), e["status"]) for e in up.requests()]
    assert keys == [
        ("Bearer sk-right-1234567890", None, 200),
        ("Bearer sk-wrong-abcdefghij", None, 401),
        ("Bearer sk-right-1234567890", None, 200),
        ("Bearer sk-wrong", None, 401),
        (None, None, 401),
        (None, None, 401),
        (None, "sk-right-1234567890", 200),
    ]


def test_anthropic_version_header_is_required(demo_upstream: DemoUpstreamProcess) -> None:
    body = {"model": "c", "max_tokens": 5, "messages": user("a")}
    r = httpx.post(demo_upstream.url + "/v1/messages", headers={"x-api-key": "k"}, json=body)
    assert r.status_code == 400
    assert r.json()["type"] == "error"
    assert r.json()["error"] == {"type": "invalid_request_error", "message": "anthropic-version: header is required"}
    r = httpx.post(
        demo_upstream.url + "/v1/messages", headers={"x-api-key": "k", "anthropic-version": "1999-01-01"}, json=body
    )
    assert r.status_code == 400


def test_unknown_model_is_404_in_both_formats(start_demo_upstream: StartDemoUpstream) -> None:
    up = start_demo_upstream(models=["known"])
    with pytest.raises(openai.NotFoundError) as oerr:
        oai(up).chat.completions.create(model="unknown-model", messages=user("a"))
    assert oerr.value.code == "model_not_found"
    assert "`unknown-model` does not exist" in oerr.value.message
    with pytest.raises(anthropic.NotFoundError) as aerr:
        ant(up).messages.create(model="unknown-model", max_tokens=5, messages=user("a"))
    assert aerr.value.body["error"] == {"type": "not_found_error", "message": "model: unknown-model"}


@pytest.mark.parametrize(
    ("status", "exc", "type_", "code"),
    [
        (400, openai.BadRequestError, "invalid_request_error", None),
        (403, openai.PermissionDeniedError, "request_forbidden", "unsupported_country_region_territory"),
        (429, openai.RateLimitError, "requests", "rate_limit_exceeded"),
        (500, openai.InternalServerError, "server_error", None),
        (503, openai.InternalServerError, "server_error", None),
    ],
)
def test_openai_injected_errors(
    demo_upstream: DemoUpstreamProcess, status: int, exc: type[openai.APIStatusError], type_: str, code: str | None
) -> None:
    with pytest.raises(exc) as err:
        oai(demo_upstream).chat.completions.create(
            model="m", messages=user("a"), extra_headers={"x-demo-behavior": f"status={status}"}
        )
    assert err.value.status_code == status
    assert set(err.value.body) == {"message", "type", "param", "code"}
    assert (err.value.type, err.value.code) == (type_, code)
    if status == 429:
        assert err.value.response.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("status", "exc", "type_"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
async def test_anthropic_injected_errors(
    demo_upstream: DemoUpstreamProcess, status: int, exc: type[anthropic.APIStatusError], type_: str
) -> None:
    with pytest.raises(exc) as err:
        await aant(demo_upstream).messages.create(
            model="c",
            max_tokens=5,
            messages=user("a"),
            extra_headers={"x-demo-behavior": f"status={status}; retry_after=7"},
        )
    assert err.value.status_code == status
    body = err.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == type_
    assert err.value.response.headers["retry-after"] == "7"


def test_stream_errors_after_start_raise_in_sdks(demo_upstream: DemoUpstreamProcess) -> None:
    stream = oai(demo_upstream).chat.completions.create(
        model="m", messages=user("a b c"), stream=True, extra_headers={"x-demo-behavior": "error_after=2"}
    )
    seen: list[Any] = []
    with pytest.raises(openai.APIError, match="server had an error"):
        seen.extend(stream)
    assert len(seen) == 2
    with pytest.raises(anthropic.APIStatusError) as err:
        for _ in ant(demo_upstream).messages.create(
            model="c",
            max_tokens=9,
            messages=user("a b"),
            stream=True,
            extra_headers={"x-demo-behavior": "error_after=3"},
        ):
            pass
    assert err.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_request_validation_errors(demo_upstream: DemoUpstreamProcess) -> None:
    base = demo_upstream.openai_base_url
    r = httpx.post(base + "/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "could not parse the JSON body" in r.json()["error"]["message"]
    r = httpx.post(base + "/chat/completions", json={"model": "m"})
    assert r.status_code == 400
    assert r.json() == {
        "error": {
            "message": "Missing required parameter: 'messages'.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "missing_required_parameter",
        }
    }
    with pytest.raises(anthropic.BadRequestError, match="max_tokens: Field required"):
        ant(demo_upstream).messages.create(model="c", messages=user("a"), max_tokens=None)
    r = httpx.get(base + "/nope")
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "Invalid URL (GET /v1/nope)"
    r = httpx.get(base + "/chat/completions")
    assert r.status_code == 405


# --------------------------------------------------------------------------------------------
# Failure modes and control over raw HTTP
# --------------------------------------------------------------------------------------------


def _chat(up: DemoUpstreamProcess, behavior: str | None = None, stream: bool = False, **extra: Any) -> httpx.Response:
    headers = {"x-demo-behavior": behavior} if behavior else {}
    body = {"model": "m", "messages": user("hello world"), "stream": stream, **extra}
    return httpx.post(up.openai_base_url + "/chat/completions", json=body, headers=headers, timeout=20)


def _sse_lines(up: DemoUpstreamProcess, behavior: str, timeout: float = 20) -> tuple[list[str], Exception | None]:
    """Read a chat stream event by event; return the events and the error that ended it, if any."""
    events: list[str] = []
    try:
        with httpx.stream(
            "POST",
            up.openai_base_url + "/chat/completions",
            json={"model": "m", "messages": user("one two three four"), "stream": True},
            headers={"x-demo-behavior": behavior},
            timeout=timeout,
        ) as response:
            for line in response.iter_lines():
                if line:
                    events.append(line)
    except (httpx.HTTPError, httpx.StreamError) as exc:
        return events, exc
    return events, None


def test_fail_next_k_then_recover(demo_upstream: DemoUpstreamProcess) -> None:
    demo_upstream.fail_next(2, status=503)
    assert [_chat(demo_upstream).status_code for _ in range(3)] == [503, 503, 200]
    assert demo_upstream.rules() == []
    assert [e["status"] for e in demo_upstream.requests()] == [503, 503, 200]


def test_rule_filters_by_model_endpoint_and_stream(demo_upstream: DemoUpstreamProcess) -> None:
    demo_upstream.set_behavior(status=500, model="bad-model")
    demo_upstream.set_behavior("status=429; endpoint=embeddings; times=1")
    demo_upstream.set_behavior(status=502, stream=True)
    assert _chat(demo_upstream).status_code == 200
    assert _chat(demo_upstream, stream=True).status_code == 502
    assert (
        httpx.post(
            demo_upstream.openai_base_url + "/chat/completions", json={"model": "bad-model", "messages": user("a")}
        ).status_code
        == 500
    )
    emb = demo_upstream.openai_base_url + "/embeddings"
    assert [httpx.post(emb, json={"model": "e", "input": "a"}).status_code for _ in range(2)] == [429, 200]
    rules = demo_upstream.rules()
    assert [(r.get("model"), r.get("stream"), r["hits"]) for r in rules] == [("bad-model", None, 1), (None, True, 1)]
    demo_upstream.clear_behavior()
    assert _chat(demo_upstream, stream=True).status_code == 200


def test_marker_in_prompt_sets_behavior(demo_upstream: DemoUpstreamProcess) -> None:
    r = httpx.post(
        demo_upstream.openai_base_url + "/chat/completions",
        json={"model": "m", "messages": user("x [[demo:status=429;retry_after=4]]")},
    )
    assert r.status_code == 429
    assert r.headers["retry-after"] == "4"
    assert "try again in 4s" in r.json()["error"]["message"]


def test_drop_closes_without_answer(demo_upstream: DemoUpstreamProcess) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        _chat(demo_upstream, "drop")
    assert demo_upstream.last_request()["status"] == 0
    assert _chat(demo_upstream).status_code == 200  # the server is fine afterwards


def test_disconnect_mid_stream(demo_upstream: DemoUpstreamProcess) -> None:
    events, error = _sse_lines(demo_upstream, "disconnect_after=3")
    assert isinstance(error, httpx.RemoteProtocolError)
    assert len(events) == 3
    assert "[DONE]" not in "".join(events)


def test_stall_after_and_hang_keep_the_connection_silent(demo_upstream: DemoUpstreamProcess) -> None:
    events, error = _sse_lines(demo_upstream, "stall_after=2", timeout=0.5)
    assert isinstance(error, httpx.ReadTimeout)
    assert len(events) == 2
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            demo_upstream.openai_base_url + "/chat/completions",
            json={"model": "m", "messages": user("a")},
            headers={"x-demo-behavior": "hang"},
            timeout=0.5,
        )


def test_delays_and_chunk_count(demo_upstream: DemoUpstreamProcess) -> None:
    start = time.monotonic()
    assert _chat(demo_upstream, "delay_ms=150").status_code == 200
    assert time.monotonic() - start >= 0.15
    start = time.monotonic()
    events, error = _sse_lines(demo_upstream, "tokens=5; chunk_delay_ms=20")
    assert error is None
    # role chunk + 5 content chunks + finish chunk + [DONE]; 7 gaps of >= 20 ms.
    assert len(events) == 8
    assert events[-1] == "data: [DONE]"
    assert time.monotonic() - start >= 7 * 0.02
    words = [json.loads(e[6:])["choices"][0]["delta"].get("content") for e in events[1:6]]
    assert "".join(words) == "lorem ipsum dolor sit amet"


def test_usage_zero_and_omit(demo_upstream: DemoUpstreamProcess) -> None:
    zero = _chat(demo_upstream, "usage=zero").json()["usage"]
    assert (zero["prompt_tokens"], zero["completion_tokens"], zero["total_tokens"]) == (0, 0, 0)
    assert "usage" not in _chat(demo_upstream, "usage=omit").json()
    events, _ = _sse_lines(demo_upstream, "usage=omit")
    assert all('"usage"' not in e for e in events)
    message = ant(demo_upstream).messages.create(
        model="c", max_tokens=9, messages=user("a"), extra_headers={"x-demo-behavior": "usage=zero"}
    )
    assert (message.usage.input_tokens, message.usage.output_tokens) == (0, 0)
    r = httpx.post(
        demo_upstream.url + "/v1/messages",
        headers={"anthropic-version": "2023-06-01", "x-demo-behavior": "usage=omit"},
        json={"model": "c", "max_tokens": 9, "messages": user("a")},
    )
    assert "usage" not in r.json()


def test_request_log_records_headers_body_and_is_bounded(start_demo_upstream: StartDemoUpstream) -> None:
    up = start_demo_upstream(record=3)
    for i in range(5):
        httpx.post(
            up.base_url("chan-a") + "/chat/completions",
            json={"model": f"m{i}", "messages": user("a")},
            headers={"authorization": f"Bearer key-{i}"},
        )
    log = up.requests()
    assert [e["body"]["model"] for e in log] == ["m2", "m3", "m4"]
    assert [e["headers"]["authorization"] for e in log] == ["Bearer key-2", "Bearer key-3", "Bearer key-4"]
    assert {e["path"] for e in log} == {"/chan-a/v1/chat/completions"}
    assert {e["endpoint"] for e in log} == {"chat"}
    assert up.info()["requests_total"] == 5
    up.clear_requests()
    assert up.requests() == []


def test_cached_answers_still_get_fresh_ids(demo_upstream: DemoUpstreamProcess) -> None:
    ids = {_chat(demo_upstream).json()["id"] for _ in range(3)}
    assert len(ids) == 3
    assert len(demo_upstream.requests()) == 3


def test_two_instances_are_told_apart(start_demo_upstream: StartDemoUpstream) -> None:
    a = start_demo_upstream(name="alpha")
    b = start_demo_upstream(name="beta")
    ra, rb = _chat(a), _chat(b)
    assert (ra.headers["x-demo-upstream"], rb.headers["x-demo-upstream"]) == ("alpha", "beta")
    assert ra.json()["id"].startswith("chatcmpl-alpha-")
    assert rb.json()["system_fingerprint"] == "fp_beta"


def test_base_behavior_from_command_line(start_demo_upstream: StartDemoUpstream) -> None:
    up = start_demo_upstream(behavior="tokens=2")
    assert _chat(up).json()["choices"][0]["message"]["content"] == "lorem ipsum"
    assert _chat(up, "tokens=3").json()["choices"][0]["message"]["content"] == "lorem ipsum dolor"


def test_invalid_behavior_is_rejected_clearly(demo_upstream: DemoUpstreamProcess) -> None:
    with pytest.raises(DemoUpstreamError, match="unknown behavior field 'stauts'"):
        demo_upstream.set_behavior("stauts=500")
    with pytest.raises(DemoUpstreamError, match="'times'"):
        demo_upstream.set_behavior(status=500, times=0)
    r = _chat(demo_upstream, "status=200")
    assert r.status_code == 400
    assert "HTTP error status 400-599" in r.json()["error"]["message"]


def test_port_in_use_fails_with_a_clear_error(demo_upstream: DemoUpstreamProcess) -> None:
    with pytest.raises(DemoUpstreamError, match=r"cannot listen on 127\.0\.0\.1"):
        DemoUpstreamProcess.spawn(name="clash", port=demo_upstream.port)


# --------------------------------------------------------------------------------------------
# Pure parts
# --------------------------------------------------------------------------------------------


def test_behavior_spec_parsing_and_merging() -> None:
    assert bh.parse_spec("status=503; retry_after=2.5 ;hang") == {"status": 503, "retry_after": 2.5, "hang": True}
    assert bh.parse_spec('{"tokens": 4, "usage": "zero"}') == {"tokens": 4, "usage": "zero"}
    assert bh.parse_spec("tool") == {"tool": "*"}
    merged = bh.build({"status": 500, "delay_ms": 5}, {}, {"status": 429})
    assert (merged.status, merged.delay_ms) == (429, 5)
    assert bh.build({}).is_default
    for bad, field in [("delay_ms=-1", "delay_ms"), ("usage=some", "usage"), ("hang=maybe", "hang"), ("x=1", "x")]:
        with pytest.raises(bh.BehaviorError, match=field):
            bh.parse_spec(bad)


def test_rule_book_first_match_and_times() -> None:
    book = bh.RuleBook()
    book.add(bh.parse_rule({"status": 500, "model": "a", "times": 2}))
    book.add(bh.parse_rule("delay_ms=5; stream=true"))
    assert book.take("chat", "b", False) == {}
    assert book.take("chat", "a", True) == {"status": 500}
    assert book.take("chat", "a", True) == {"status": 500}
    assert book.take("chat", "a", True) == {"delay_ms": 5}
    assert len(book.rules) == 1


def test_token_rule_and_reply() -> None:
    assert content.count_tokens("  a  b\tc\n") == 3
    assert content.reply_words("hi [[demo:tool]]  there", None) == ["echo:", "hi", "there"]
    assert content.stream_pieces(["echo:", "a", "b"]) == ["echo:", " a", " b"]
    assert content.truncate(["a", "b", "c"], 2) == (["a", "b"], True)
    assert content.truncate(["a"], 5) == (["a"], False)
    body = {
        "system": [{"type": "text", "text": "sys prompt"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "image", "source": {}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "result text"}]},
        ],
    }
    assert content.input_tokens(content.anthropic_prompt_texts(body)) == 5
    assert content.last_user_text(body, ("user",)) == "result text"
    fragments = content.json_fragments('{"a": 1, "b": "x y"}')
    assert "".join(fragments) == '{"a": 1, "b": "x y"}'
    assert len(fragments) > 1
