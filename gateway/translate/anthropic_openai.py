"""Anthropic client (``/v1/messages``) -> OpenAI-compatible upstream (vLLM, OpenAI, ...).

Request (``messages`` only):

- ``system`` (string or text blocks) -> one leading ``system`` message (blocks joined by newlines);
- user content: text -> text (text-only content becomes one string), ``image`` base64/url sources ->
  ``image_url`` parts (data: URL or the URL), ``tool_result`` blocks -> ``tool`` messages placed before
  the rest of that turn (``is_error`` results are prefixed ``Error:``; images inside tool results are
  rejected: OpenAI tool messages are text-only); ``document`` and other blocks are rejected;
- assistant content: text -> ``content``, ``tool_use`` -> ``tool_calls`` (input JSON-encoded);
  ``thinking``/``redacted_thinking`` blocks are dropped (no OpenAI equivalent);
- ``tools`` (custom tools only; Anthropic server tools are rejected) -> function tools with
  ``parameters`` = ``input_schema``; ``tool_choice`` auto/any/tool/none -> auto/required/named/none;
  ``disable_parallel_tool_use`` -> ``parallel_tool_calls: false``;
- ``max_tokens`` -> the constructor's ``max_tokens_field`` (``max_tokens`` by default, which vLLM and most
  compatible servers take; use ``max_completion_tokens`` for OpenAI's reasoning models);
  ``stop_sequences`` -> ``stop``; ``temperature``, ``top_p`` as is; ``metadata.user_id`` -> ``user``;
  ``output_config.format`` json_schema -> ``response_format``; ``top_k`` and ``thinking`` are dropped;
- streams ask for ``stream_options.include_usage``.

Response: ``finish_reason`` stop -> end_turn (``stop_sequence`` when vLLM's ``stop_reason`` names the
matched stop string), length -> max_tokens, tool_calls/function_call -> tool_use, content_filter ->
refusal. Usage: ``input_tokens`` = prompt - cached, ``cache_read_input_tokens`` = cached (when reported),
``output_tokens`` = completion. Tool arguments that are not a JSON object arrive as
``{"_raw_arguments": "<text>"}`` (Anthropic's ``input`` must be an object).

Streams: OpenAI chunks -> ``message_start`` (held back until the first content, so an upstream error
before any content leaves the client stream empty), ``content_block_start``/``delta``/``stop`` for text
(``text_delta``) and tool calls (``input_json_delta``), then at ``[DONE]`` ``message_delta`` with
``stop_reason`` and cumulative usage (``input_tokens`` too: OpenAI reports the prompt only at the end, so
``message_start`` says 0) and ``message_stop``. Upstream error chunks become an ``error`` event.
"""

from __future__ import annotations

import json
from typing import Any, Literal

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
from newapi_gateway.translate.errors import anthropic_error_body, to_anthropic_error
from newapi_gateway.translate.openai_openai import PATHS
from newapi_gateway.translate.sse import EventSplitter, dumps, named_event, parse_event
from newapi_gateway.translate.usage import openai_usage

#: OpenAI ``finish_reason`` -> Anthropic ``stop_reason``.
STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish: Any, matched_stop: Any = None) -> tuple[str, str | None]:
    """OpenAI finish reason (+ vLLM's matched ``stop_reason``) -> (Anthropic stop_reason, stop_sequence)."""
    if finish == "stop" and isinstance(matched_stop, str) and matched_stop:
        return "stop_sequence", matched_stop
    return (STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"), None


def anthropic_usage_body(usage: Usage) -> dict[str, Any]:
    """:class:`Usage` (from an OpenAI upstream) -> Anthropic's ``usage`` object."""
    body: dict[str, Any] = {
        "input_tokens": max(usage.input_tokens - usage.cache_read_tokens, 0),
        "output_tokens": usage.output_tokens,
    }
    if usage.cache_read_tokens:
        body["cache_read_input_tokens"] = usage.cache_read_tokens
    return body


def tool_input(arguments: Any) -> dict[str, Any]:
    """OpenAI tool call ``arguments`` (a JSON string) -> Anthropic tool ``input`` (an object)."""
    if arguments in (None, ""):
        return {}
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}


# ------------------------------------------------------------------------------------------------
# Request
# ------------------------------------------------------------------------------------------------


def _text_of_blocks(blocks: Any, param: str) -> str:
    if isinstance(blocks, str):
        return blocks
    if not isinstance(blocks, list):
        raise TranslationError("must be a string or an array of text blocks", param)
    texts: list[str] = []
    for k, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise TranslationError("only text blocks are supported here by this model's provider", f"{param}[{k}]")
        texts.append(block["text"])
    return "\n".join(texts)


def _image_part(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str):
            raise TranslationError("a base64 image source needs media_type and data", f"{param}.source")
        return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
    if isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise TranslationError("only base64 and url image sources are supported by this model's provider", param)


def _tool_message(block: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError("a tool_result block needs a tool_use_id", f"{param}.tool_use_id")
    content = block.get("content")
    text = "" if content is None else _text_of_blocks(content, f"{param}.content")
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _user_messages(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise TranslationError("content must be a string or an array of content blocks", param)
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for k, block in enumerate(content):
        where = f"{param}[{k}]"
        if not isinstance(block, dict):
            raise TranslationError("each content block must be an object", where)
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_part(block, where))
        elif kind == "tool_result":
            tools.append(_tool_message(block, where))
        else:
            raise TranslationError(f"content block type {kind!r} is not supported by this model's provider", where)
    messages = tools
    if parts:
        if all(part["type"] == "text" for part in parts):
            messages.append({"role": "user", "content": "\n".join(part["text"] for part in parts)})
        else:
            messages.append({"role": "user", "content": parts})
    return messages


def _assistant_message(content: Any, param: str) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise TranslationError("content must be a string or an array of content blocks", param)
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for k, block in enumerate(content):
        where = f"{param}[{k}]"
        if not isinstance(block, dict):
            raise TranslationError("each content block must be an object", where)
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise TranslationError("a tool_use block needs an id and a name", where)
            arguments = dumps(block["input"] if isinstance(block.get("input"), dict) else {}).decode()
            function = {"name": block["name"], "arguments": arguments}
            calls.append({"id": block["id"], "type": "function", "function": function})
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise TranslationError(f"content block type {kind!r} is not supported by this model's provider", where)
    if not texts and not calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def convert_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Anthropic ``system`` + ``messages`` -> OpenAI ``messages``."""
    out: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        text = _text_of_blocks(system, "system")
        if text:
            out.append({"role": "system", "content": text})
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages must be a non-empty array", "messages")
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise TranslationError("each message must be an object", param)
        role = message.get("role")
        if role == "user":
            out.extend(_user_messages(message.get("content"), f"{param}.content"))
        elif role == "assistant":
            converted = _assistant_message(message.get("content"), f"{param}.content")
            if converted is not None:
                out.append(converted)
        else:
            raise TranslationError(
                "role must be user or assistant (system goes in the top-level system)", f"{param}.role"
            )
    return out


def convert_tools(tools: Any) -> list[dict[str, Any]]:
    """Anthropic custom ``tools`` -> OpenAI function tools."""
    if not isinstance(tools, list):
        raise TranslationError("tools must be an array", "tools")
    out: list[dict[str, Any]] = []
    for j, tool in enumerate(tools):
        param = f"tools[{j}]"
        if not isinstance(tool, dict) or tool.get("type", "custom") not in ("custom", None):
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise TranslationError(
                f"tool type {kind!r} (an Anthropic server tool) is not available for this model", param
            )
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise TranslationError("a tool needs a name", f"{param}.name")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise TranslationError("a tool needs an input_schema object", f"{param}.input_schema")
        function: dict[str, Any] = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str) and tool["description"]:
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def convert_tool_choice(choice: Any) -> tuple[Any, bool]:
    """Anthropic ``tool_choice`` -> (OpenAI ``tool_choice`` or None, parallel tool use disabled?)."""
    if choice is None:
        return None, False
    if not isinstance(choice, dict):
        raise TranslationError("tool_choice must be an object", "tool_choice")
    disabled = choice.get("disable_parallel_tool_use") is True
    kind = choice.get("type")
    if kind == "auto":
        return "auto", disabled
    if kind == "any":
        return "required", disabled
    if kind == "none":
        return "none", False
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, disabled
    raise TranslationError("tool_choice.type must be auto, any, tool or none", "tool_choice.type")


# ------------------------------------------------------------------------------------------------
# Stream
# ------------------------------------------------------------------------------------------------


class OpenAIToAnthropicStream(StreamTranslator):
    """OpenAI ``chat.completion.chunk`` stream -> Anthropic Messages event stream."""

    def __init__(self, request_model: str) -> None:
        self.usage = Usage()
        self.upstream_error: tuple[int, dict[str, Any]] | None = None
        self._splitter = EventSplitter()
        self._id = ""
        self._model = request_model
        self._started = False
        self._done = False
        self._open: int | None = None  # index of the open content block
        self._open_kind: Literal["text", "tool"] | None = None
        self._next_block = 0
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool call index -> Anthropic block index
        self._finish: Any = None
        self._matched_stop: Any = None

    def feed(self, data: bytes) -> bytes:
        if self._done:
            return b""
        return b"".join(self._event(raw) for raw in self._splitter.feed(data))

    def finish(self) -> bytes:
        out = b""
        rest = self._splitter.rest()
        if rest.strip() and not self._done:
            out = self._event(rest)
        if self._done:
            return out
        if self._finish is not None:  # finish_reason seen, [DONE] missing: the answer is complete
            return out + self._end()
        self._done = True
        message = "the upstream stream ended before the message was complete"
        self.upstream_error = (502, anthropic_error_body("api_error", message))
        return out + named_event("error", self.upstream_error[1])

    # -- framing --------------------------------------------------------------------------------

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message: dict[str, Any] = {
            "id": self._id or "msg_pending",
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return named_event("message_start", {"type": "message_start", "message": message})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open, self._open_kind = self._open, None, None
        return b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n' % index

    def _open_block(self, kind: Literal["text", "tool"], block: dict[str, Any]) -> bytes:
        out = self._start() + self._close()
        index = self._next_block
        self._next_block += 1
        self._open, self._open_kind = index, kind
        return out + named_event(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
        )

    def _text(self, text: str) -> bytes:
        out = b"" if self._open_kind == "text" else self._open_block("text", {"type": "text", "text": ""})
        return (
            out
            + b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
            + str(self._open).encode()
            + b',"delta":{"type":"text_delta","text":'
            + dumps(text)
            + b"}}\n\n"
        )

    def _tool_call(self, call: dict[str, Any]) -> bytes:
        out = b""
        position = call.get("index", 0)
        if not isinstance(position, int):
            position = 0
        fn = call.get("function")
        if not isinstance(fn, dict):
            fn = {}
        if position not in self._tool_blocks:
            call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call_id or f"toolu_{self._id}_{position}",
                "name": fn.get("name") if isinstance(fn.get("name"), str) else "",
                "input": {},
            }
            out = self._open_block("tool", block)
            self._tool_blocks[position] = self._next_block - 1
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            event = {"type": "content_block_delta", "index": self._tool_blocks[position], "delta": delta}
            out += named_event("content_block_delta", event)
        return out

    def _end(self) -> bytes:
        self._done = True
        reason, sequence = stop_reason(self._finish, self._matched_stop)
        usage = anthropic_usage_body(self.usage)
        usage = {"input_tokens": usage.pop("input_tokens"), **usage}
        delta = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence}, "usage": usage}
        return (
            self._start()
            + self._close()
            + named_event("message_delta", delta)
            + b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
        )

    # -- events ---------------------------------------------------------------------------------

    def _event(self, raw: bytes) -> bytes:
        if self._done:
            return b""
        _, data = parse_event(raw)
        if not data:
            return b""
        if data.strip() == b"[DONE]":
            return self._end()
        try:
            obj = json.loads(data)
        except ValueError:
            return b""
        if not isinstance(obj, dict):
            return b""
        if isinstance(obj.get("error"), dict) or obj.get("object") == "error":
            err = obj["error"] if isinstance(obj.get("error"), dict) else obj
            code = err.get("code")
            status = code if isinstance(code, int) and 400 <= code < 600 else 500
            self.upstream_error = to_anthropic_error(status, obj)
            self._done = True
            return named_event("error", self.upstream_error[1])
        if not self._id and isinstance(obj.get("id"), str):
            self._id = obj["id"]
            if isinstance(obj.get("model"), str):
                self._model = obj["model"]
        usage = openai_usage(obj.get("usage"))
        if usage is not None:
            self.usage = usage
        out = b""
        choices = obj.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                text = delta.get("content")
                if isinstance(text, str) and text:
                    out += self._text(text)
                calls = delta.get("tool_calls")
                for call in calls if isinstance(calls, list) else []:
                    if isinstance(call, dict):
                        out += self._tool_call(call)
            if choice.get("finish_reason") is not None:
                self._finish = choice["finish_reason"]
                self._matched_stop = choice.get("stop_reason")
        return out


# ------------------------------------------------------------------------------------------------
# Translator
# ------------------------------------------------------------------------------------------------


class AnthropicToOpenAI(Translator):
    """Anthropic Messages client -> OpenAI-compatible upstream.

    ``max_tokens_field`` is the request field the upstream takes the output limit in.
    """

    client_format = "anthropic"
    upstream_format = "openai"

    def __init__(self, max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens") -> None:
        self.max_tokens_field = max_tokens_field

    def request(self, operation: Operation, body: dict[str, Any], upstream_model: str) -> UpstreamRequest:
        if operation != "messages":
            raise UnsupportedOperation(f"operation {operation!r} is not available for Anthropic-format clients")
        out: dict[str, Any] = {"model": upstream_model, "messages": convert_messages(body)}
        max_tokens = body.get("max_tokens")
        if max_tokens is not None:
            if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
                raise TranslationError("max_tokens must be a positive integer", "max_tokens")
            out[self.max_tokens_field] = max_tokens
        stops = body.get("stop_sequences")
        if stops:
            if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
                raise TranslationError("stop_sequences must be an array of strings", "stop_sequences")
            out["stop"] = stops
        for key in ("temperature", "top_p"):
            if isinstance(body.get(key), int | float) and not isinstance(body.get(key), bool):
                out[key] = body[key]
        tools = body.get("tools")
        if tools:
            out["tools"] = convert_tools(tools)
            choice, no_parallel = convert_tool_choice(body.get("tool_choice"))
            if choice is not None:
                out["tool_choice"] = choice
            if no_parallel:
                out["parallel_tool_calls"] = False
        metadata = body.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str) and metadata["user_id"]:
            out["user"] = metadata["user_id"]
        output_config = body.get("output_config")
        output_format = output_config.get("format") if isinstance(output_config, dict) else None
        if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
            schema = output_format.get("schema")
            if not isinstance(schema, dict):
                raise TranslationError("output_config.format.schema must be an object", "output_config.format.schema")
            out["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
        stream = body.get("stream") is True
        if stream:
            out["stream"] = True
            out["stream_options"] = {"include_usage": True}
        return UpstreamRequest(path=PATHS["chat"], body=out, stream=stream)

    def response(self, operation: Operation, status: int, body: dict[str, Any]) -> ClientResponse:
        choices = body.get("choices")
        choice: dict[str, Any] = {}
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
        message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
        content: list[dict[str, Any]] = []
        text = message.get("content")
        if isinstance(text, str) and text:
            content.append({"type": "text", "text": text})
        calls = message.get("tool_calls")
        for k, call in enumerate(calls if isinstance(calls, list) else []):
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict):
                continue
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id") or f"toolu_{body.get('id', '')}_{k}",
                    "name": fn.get("name", ""),
                    "input": tool_input(fn.get("arguments")),
                }
            )
        reason, sequence = stop_reason(choice.get("finish_reason"), choice.get("stop_reason"))
        usage = openai_usage(body.get("usage")) or Usage()
        client = {
            "id": body.get("id", ""),
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": content,
            "stop_reason": reason,
            "stop_sequence": sequence,
            "usage": anthropic_usage_body(usage),
        }
        return ClientResponse(status=status, body=client, usage=usage)

    def error(self, status: int, body: dict[str, Any] | None, text: str = "") -> tuple[int, dict[str, Any]]:
        return to_anthropic_error(status, body, text)

    def stream(self, operation: Operation, request_body: dict[str, Any]) -> StreamTranslator:
        model = request_body.get("model")
        return OpenAIToAnthropicStream(request_model=model if isinstance(model, str) else "")
