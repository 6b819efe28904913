"""OpenAI chat client -> Anthropic Messages upstream.

Request (``chat`` only; ``completions``/``embeddings`` raise :class:`UnsupportedOperation`):

- ``system``/``developer`` messages (anywhere in the list) -> top-level ``system`` text blocks, in order;
- ``user`` content: text parts -> text blocks, ``image_url`` ``data:`` URLs -> base64 image blocks
  (jpeg/png/gif/webp), http(s) URLs -> ``url`` image blocks; audio/file parts are rejected;
- ``assistant`` content -> text blocks, ``tool_calls`` -> ``tool_use`` blocks (``arguments`` JSON parsed);
- ``tool`` messages -> ``tool_result`` blocks in a user message; consecutive same-role messages are
  merged (tool results first), empty text is dropped (Anthropic rejects empty text blocks);
- ``tools`` -> ``{name, description, input_schema}``; ``tool_choice`` auto/none/required/named ->
  auto/none/any/tool; ``parallel_tool_calls: false`` -> ``disable_parallel_tool_use``;
- ``max_completion_tokens`` or ``max_tokens``, else the constructor's ``default_max_tokens`` (4096: every
  Claude model accepts it; Anthropic requires the field); ``stop`` -> ``stop_sequences``;
  ``temperature`` clamped to Anthropic's 0..1; ``top_p`` only when no ``temperature`` is given (newer
  Claude models reject both); ``user`` -> ``metadata.user_id``; ``response_format`` ``json_schema`` ->
  ``output_config.format`` (``json_object`` is dropped: OpenAI already requires the prompt to ask for JSON);
- ``n`` > 1 and the legacy ``functions``/``function_call`` are rejected; other OpenAI-only knobs
  (penalties, seed, logit_bias, logprobs, ...) are dropped.

Response: text blocks joined -> ``content``; ``tool_use`` -> ``tool_calls``; thinking blocks are not
forwarded. ``stop_reason`` end_turn/stop_sequence/pause_turn -> stop, max_tokens and
model_context_window_exceeded -> length, tool_use -> tool_calls, refusal -> content_filter. Usage:
``prompt_tokens`` = input + cache creation + cache read tokens (``prompt_tokens_details.cached_tokens`` =
cache read), ``completion_tokens`` = output. ``id`` and ``model`` are Anthropic's; ``created`` comes from
the injected clock.

Streams: Anthropic events -> ``chat.completion.chunk`` events, the role chunk sent lazily with the first
content (so an ``error`` event before any content leaves the client stream empty and the gateway may
fail over), tool calls with ``index`` and ``id``/``name`` on their first delta, a finish chunk on
``message_delta``, the usage chunk (``choices: []``) only if the client asked for ``include_usage``, then
``data: [DONE]``. An ``error`` event becomes an OpenAI error chunk (``data: {"error": ...}``, which the
OpenAI SDK raises) and ends the stream without ``[DONE]``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from newapi_gateway.translate.anthropic_anthropic import ANTHROPIC_VERSION, MESSAGES_PATH
from newapi_gateway.translate.base import (
    ClientResponse,
    Operation,
    StreamTranslator,
    TranslationError,
    Translator,
    UnsupportedOperation,
    UpstreamRequest,
    Usage,
)
from newapi_gateway.translate.errors import ANTHROPIC_STATUS_BY_TYPE, openai_error_body, to_openai_error
from newapi_gateway.translate.openai_openai import client_wants_usage
from newapi_gateway.translate.sse import DONE, EventSplitter, data_event, dumps, parse_event
from newapi_gateway.translate.usage import AnthropicUsage, anthropic_usage

DEFAULT_MAX_TOKENS = 4096

#: Anthropic ``stop_reason`` -> OpenAI ``finish_reason``.
FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def finish_reason(stop_reason: Any) -> str:
    """Anthropic stop reason -> OpenAI finish reason (unknown or missing -> ``stop``)."""
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def openai_usage_body(usage: Usage) -> dict[str, Any]:
    """:class:`Usage` -> OpenAI's ``usage`` object."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
    }


# ------------------------------------------------------------------------------------------------
# Request
# ------------------------------------------------------------------------------------------------


def _image_block(url: Any, param: str) -> dict[str, Any]:
    if not isinstance(url, str) or not url:
        raise TranslationError("image_url.url must be a non-empty string", param)
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        media_type = media_type.strip().lower()
        if media_type == "image/jpg":
            media_type = "image/jpeg"
        if not sep or encoding.strip().lower() != "base64":
            raise TranslationError("image data URLs must be base64 (data:image/png;base64,...)", param)
        if media_type not in IMAGE_MEDIA_TYPES:
            raise TranslationError(
                f"image type {media_type or '(none)'} is not supported upstream; use jpeg, png, gif or webp", param
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise TranslationError("image_url.url must be an http(s) URL or a base64 data: URL", param)


def _content_blocks(content: Any, param: str, *, images: bool) -> list[dict[str, Any]]:
    """OpenAI message content (string or parts) -> Anthropic content blocks (empty text dropped)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError("content must be a string or an array of content parts", param)
    blocks: list[dict[str, Any]] = []
    for k, part in enumerate(content):
        where = f"{param}[{k}]"
        if not isinstance(part, dict):
            raise TranslationError("each content part must be an object", where)
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise TranslationError(f"a {kind} part needs a string {kind!r}", where)
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url" and images:
            image = part.get("image_url")
            blocks.append(_image_block(image.get("url") if isinstance(image, dict) else image, where))
        else:
            raise TranslationError(f"content part type {kind!r} is not supported by this model's provider", where)
    return blocks


def _tool_use_block(call: Any, param: str) -> dict[str, Any]:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        raise TranslationError("each tool call needs a function object", param)
    if call.get("type", "function") != "function":
        raise TranslationError(f"tool call type {call.get('type')!r} is not supported", param)
    fn = call["function"]
    call_id, name = call.get("id"), fn.get("name")
    if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
        raise TranslationError("each tool call needs an id and a function name", param)
    arguments = fn.get("arguments")
    if arguments in (None, ""):
        tool_input: Any = {}
    else:
        try:
            tool_input = json.loads(arguments) if isinstance(arguments, str) else None
        except ValueError:
            tool_input = None
        if not isinstance(tool_input, dict):
            raise TranslationError(
                "function.arguments must be a JSON object encoded as a string", f"{param}.function.arguments"
            )
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def _tool_result_block(message: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError("a tool message needs a tool_call_id", f"{param}.tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        parts = _content_blocks(content, f"{param}.content", images=True)
        if parts:
            block["content"] = parts
    return block


def convert_messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenAI ``messages`` -> (Anthropic ``system`` blocks, Anthropic ``messages``)."""
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages must be a non-empty array", "messages")
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []

    def append(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise TranslationError("each message must be an object", param)
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_content_blocks(content, f"{param}.content", images=False))
        elif role == "user":
            append("user", _content_blocks(content, f"{param}.content", images=True))
        elif role == "assistant":
            blocks = _content_blocks(content, f"{param}.content", images=False)
            calls = message.get("tool_calls")
            if calls is not None:
                if not isinstance(calls, list):
                    raise TranslationError("tool_calls must be an array", f"{param}.tool_calls")
                blocks.extend(_tool_use_block(call, f"{param}.tool_calls[{j}]") for j, call in enumerate(calls))
            if message.get("function_call") is not None:
                raise TranslationError("the legacy function_call is not supported; use tool_calls", param)
            append("assistant", blocks)
        elif role == "tool":
            append("user", [_tool_result_block(message, param)])
        elif role == "function":
            raise TranslationError("the legacy function role is not supported; use tools and role tool", param)
        else:
            raise TranslationError(f"unknown message role {role!r}", f"{param}.role")
    for message in out:
        if message["role"] == "user":  # Anthropic wants tool results before anything else in a turn
            message["content"].sort(key=lambda block: block["type"] != "tool_result")
    if not out:
        raise TranslationError("messages has no user or assistant content to send", "messages")
    return system, out


def convert_tools(tools: Any) -> list[dict[str, Any]]:
    """OpenAI ``tools`` -> Anthropic ``tools``."""
    if not isinstance(tools, list):
        raise TranslationError("tools must be an array", "tools")
    out: list[dict[str, Any]] = []
    for j, tool in enumerate(tools):
        param = f"tools[{j}]"
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise TranslationError("only tools of type function are supported by this model's provider", param)
        fn = tool["function"]
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise TranslationError("a function tool needs a name", f"{param}.function.name")
        schema = fn.get("parameters")
        if schema is None:
            schema = {"type": "object", "properties": {}}
        elif not isinstance(schema, dict):
            raise TranslationError("function.parameters must be a JSON Schema object", f"{param}.function.parameters")
        elif "type" not in schema:
            schema = {"type": "object", **schema}
        converted: dict[str, Any] = {"name": name, "input_schema": schema}
        if isinstance(fn.get("description"), str) and fn["description"]:
            converted["description"] = fn["description"]
        out.append(converted)
    return out


def convert_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    """OpenAI ``tool_choice`` (+ ``parallel_tool_calls``) -> Anthropic ``tool_choice`` (None: default)."""
    result: dict[str, Any] | None
    if choice is None:
        result = None
    elif choice == "auto":
        result = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        result = {"type": "any"}
    elif (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(choice.get("function"), dict)
        and isinstance(choice["function"].get("name"), str)
    ):
        result = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise TranslationError("tool_choice must be auto, none, required or a named function", "tool_choice")
    if parallel is False:
        result = {**(result or {"type": "auto"}), "disable_parallel_tool_use": True}
    return result


def _positive_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TranslationError(f"{key} must be a positive integer", key)
    return value


# ------------------------------------------------------------------------------------------------
# Stream
# ------------------------------------------------------------------------------------------------


class AnthropicToOpenAIStream(StreamTranslator):
    """Anthropic event stream -> OpenAI ``chat.completion.chunk`` stream."""

    def __init__(self, request_model: str, created: int, include_usage: bool) -> None:
        self.usage = Usage()
        self.upstream_error: tuple[int, dict[str, Any]] | None = None
        self._include_usage = include_usage
        self._created = created
        self._id = "chatcmpl-pending"
        self._model = request_model
        self._splitter = EventSplitter()
        self._acc = AnthropicUsage()
        self._tool_index: dict[int, int] = {}
        self._role_sent = False
        self._finish: str | None = None
        self._done = False
        self._prefix = b""
        self._suffix = b""
        self._set_frame()

    def _set_frame(self) -> None:
        self._prefix = (
            b'data: {"id":'
            + dumps(self._id)
            + b',"object":"chat.completion.chunk","created":'
            + str(self._created).encode()
            + b',"model":'
            + dumps(self._model)
            + b',"system_fingerprint":null,"choices":[{"index":0,"delta":'
        )
        self._suffix = b"}]" + (b',"usage":null' if self._include_usage else b"") + b"}\n\n"

    def _chunk(self, delta: bytes, finish: str | None = None) -> bytes:
        reason = b'"' + finish.encode() + b'"' if finish else b"null"
        head = b""
        if not self._role_sent:
            self._role_sent = True
            head = (
                self._prefix + b'{"role":"assistant","content":""},"logprobs":null,"finish_reason":null' + self._suffix
            )
        return head + self._prefix + delta + b',"logprobs":null,"finish_reason":' + reason + self._suffix

    def feed(self, data: bytes) -> bytes:
        if self._done:
            return b""
        out = [self._event(raw) for raw in self._splitter.feed(data)]
        return b"".join(out)

    def finish(self) -> bytes:
        out = b""
        rest = self._splitter.rest()
        if rest.strip() and not self._done:
            out = self._event(rest)
        if self._done:
            return out
        self._done = True
        if self._finish is not None:  # message_delta seen, message_stop lost: the answer is complete
            return out + self._end()
        message = "the upstream stream ended before the message was complete"
        self.upstream_error = (502, openai_error_body(message, "upstream_error", None, "upstream_error"))
        return out + data_event(self.upstream_error[1])

    def _end(self) -> bytes:
        tail = b""
        if self._include_usage:
            tail = data_event(
                {
                    "id": self._id,
                    "object": "chat.completion.chunk",
                    "created": self._created,
                    "model": self._model,
                    "system_fingerprint": None,
                    "choices": [],
                    "usage": openai_usage_body(self.usage),
                }
            )
        return tail + DONE

    def _event(self, raw: bytes) -> bytes:
        if self._done:
            return b""
        name, data = parse_event(raw)
        if not data:
            return b""
        try:
            obj = json.loads(data)
        except ValueError:
            return b""
        if not isinstance(obj, dict):
            return b""
        kind = obj.get("type", name.decode() if name else None)
        if kind == "content_block_delta":
            delta = obj.get("delta")
            if not isinstance(delta, dict):
                return b""
            if delta.get("type") == "text_delta":
                text = delta.get("text")
                return self._chunk(b'{"content":' + dumps(text) + b"}") if isinstance(text, str) and text else b""
            if delta.get("type") == "input_json_delta":
                partial = delta.get("partial_json")
                index = self._tool_index.get(obj.get("index", -1))
                if not isinstance(partial, str) or not partial or index is None:
                    return b""
                call = {"index": index, "function": {"arguments": partial}}
                return self._chunk(b'{"tool_calls":' + dumps([call]) + b"}")
            return b""  # thinking, signature and citation deltas are not forwarded
        if kind == "content_block_start":
            return self._block_start(obj)
        if kind == "message_start":
            message = obj.get("message")
            if isinstance(message, dict):
                if isinstance(message.get("id"), str):
                    self._id = message["id"]
                if isinstance(message.get("model"), str):
                    self._model = message["model"]
                self._set_frame()
                self._acc.apply(message.get("usage"))
                self.usage = self._acc.usage()
            return b""
        if kind == "message_delta":
            self._acc.apply(obj.get("usage"))
            self.usage = self._acc.usage()
            delta = obj.get("delta")
            if isinstance(delta, dict) and "stop_reason" in delta:
                self._finish = finish_reason(delta.get("stop_reason"))
                return self._chunk(b"{}", self._finish)
            return b""
        if kind == "message_stop":
            self._done = True
            if self._finish is None:
                self._finish = "stop"
                return self._chunk(b"{}", "stop") + self._end()
            return self._end()
        if kind == "error":
            err = obj.get("error")
            etype = err.get("type") if isinstance(err, dict) else None
            status = ANTHROPIC_STATUS_BY_TYPE.get(etype, 500) if isinstance(etype, str) else 500
            self.upstream_error = to_openai_error(status, obj)
            self._done = True
            return data_event(self.upstream_error[1])
        return b""  # ping, content_block_stop and future event types

    def _block_start(self, obj: dict[str, Any]) -> bytes:
        block = obj.get("content_block")
        if not isinstance(block, dict):
            return b""
        if block.get("type") == "text":
            text = block.get("text")
            return self._chunk(b'{"content":' + dumps(text) + b"}") if isinstance(text, str) and text else b""
        if block.get("type") == "tool_use":
            index = len(self._tool_index)
            self._tool_index[obj.get("index", -1 - index)] = index
            tool_input = block.get("input")
            arguments = dumps(tool_input).decode() if isinstance(tool_input, dict) and tool_input else ""
            call = {
                "index": index,
                "id": block.get("id") or f"call_{self._id}_{index}",
                "type": "function",
                "function": {"name": block.get("name", ""), "arguments": arguments},
            }
            return self._chunk(b'{"tool_calls":' + dumps([call]) + b"}")
        return b""  # thinking, redacted_thinking and server tool blocks are not forwarded


# ------------------------------------------------------------------------------------------------
# Translator
# ------------------------------------------------------------------------------------------------


class OpenAIToAnthropic(Translator):
    """OpenAI chat client -> Anthropic Messages upstream.

    ``default_max_tokens`` is sent when the client gives neither ``max_completion_tokens`` nor
    ``max_tokens``; ``clock`` supplies ``created`` timestamps (seconds since the epoch).
    """

    client_format = "openai"
    upstream_format = "anthropic"

    def __init__(self, default_max_tokens: int = DEFAULT_MAX_TOKENS, clock: Callable[[], float] = time.time) -> None:
        if default_max_tokens < 1:
            raise ValueError("default_max_tokens must be at least 1")
        self.default_max_tokens = default_max_tokens
        self.clock = clock

    def request(self, operation: Operation, body: dict[str, Any], upstream_model: str) -> UpstreamRequest:
        if operation != "chat":
            raise UnsupportedOperation(
                f"this model is served by an Anthropic upstream, which offers chat completions only, not {operation}"
            )
        n = body.get("n")
        if n not in (None, 1):
            raise TranslationError("n must be 1 for this model (its provider returns one choice)", "n")
        if body.get("functions") is not None or body.get("function_call") is not None:
            raise TranslationError("the legacy functions/function_call are not supported; use tools", "functions")
        system, messages = convert_messages(body.get("messages"))
        max_tokens = (
            _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens") or self.default_max_tokens
        )
        out: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens, "messages": messages}
        if system:
            out["system"] = system
        stop = body.get("stop")
        if isinstance(stop, str):
            out["stop_sequences"] = [stop]
        elif isinstance(stop, list) and stop:
            if not all(isinstance(s, str) for s in stop):
                raise TranslationError("stop must be a string or an array of strings", "stop")
            out["stop_sequences"] = stop
        temperature = body.get("temperature")
        if isinstance(temperature, int | float) and not isinstance(temperature, bool):
            out["temperature"] = min(max(float(temperature), 0.0), 1.0)
        elif isinstance(body.get("top_p"), int | float):
            out["top_p"] = body["top_p"]
        tools = body.get("tools")
        if tools:
            out["tools"] = convert_tools(tools)
            choice = convert_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
            if choice is not None:
                out["tool_choice"] = choice
        if isinstance(body.get("user"), str) and body["user"]:
            out["metadata"] = {"user_id": body["user"]}
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            spec = response_format.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise TranslationError("response_format.json_schema.schema must be an object", "response_format")
            out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        stream = body.get("stream") is True
        if stream:
            out["stream"] = True
        return UpstreamRequest(
            path=MESSAGES_PATH, body=out, headers={"anthropic-version": ANTHROPIC_VERSION}, stream=stream
        )

    def response(self, operation: Operation, status: int, body: dict[str, Any]) -> ClientResponse:
        content = body.get("content")
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif block.get("type") == "tool_use":
                calls.append(
                    {
                        "id": block.get("id", ""),
                        "type": "function",
                        "function": {
                            "name": block.get("name", ""),
                            "arguments": dumps(block.get("input", {})).decode(),
                        },
                    }
                )
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        usage = anthropic_usage(body["usage"]) if isinstance(body.get("usage"), dict) else Usage()
        client = {
            "id": body.get("id", ""),
            "object": "chat.completion",
            "created": int(self.clock()),
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason(body.get("stop_reason")),
                }
            ],
            "usage": openai_usage_body(usage),
        }
        return ClientResponse(status=status, body=client, usage=usage)

    def error(self, status: int, body: dict[str, Any] | None, text: str = "") -> tuple[int, dict[str, Any]]:
        return to_openai_error(status, body, text)

    def stream(self, operation: Operation, request_body: dict[str, Any]) -> StreamTranslator:
        model = request_body.get("model")
        return AnthropicToOpenAIStream(
            request_model=model if isinstance(model, str) else "",
            created=int(self.clock()),
            include_usage=client_wants_usage(request_body),
        )
