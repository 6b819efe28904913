"""The text of a request that the AUP check reads (pure; never raises on odd shapes).

What is read, per operation (``newapi_gateway.translate.base.Operation``):

* ``chat`` (OpenAI chat completions): every message's ``content`` when it is a string; in content
  arrays, the ``text`` of ``text`` parts and the ``refusal`` of ``refusal`` parts; the ``arguments``
  strings of assistant ``tool_calls`` (and the legacy ``function_call``).
* ``completions``: ``prompt`` (a string or a list of strings; token-id arrays are skipped) and ``suffix``.
* ``messages`` (Anthropic): ``system`` (a string or text blocks); every message's string content;
  ``text`` blocks; the text inside ``tool_result`` blocks; ``document`` blocks whose source is plain
  text.
* ``embeddings``: nothing (the output is a vector, not content; corpora for retrieval would trip
  the patterns on legitimate documents).

Never read: images, audio and files (``image_url``, ``input_audio``, ``file``, ``image``, base64
``document`` sources), tool and function definitions, ``thinking`` blocks. Pieces are joined with
newlines, so a pattern that stops at a line break cannot span two messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_OPENAI_TEXT_PARTS = {"text": "text", "input_text": "text", "refusal": "refusal", "output_text": "text"}


def request_text(operation: str, body: Mapping[str, Any]) -> str:
    """The text content of a request body for ``operation``; ``""`` when there is none."""
    parts: list[str] = []
    if operation == "chat":
        _chat(body, parts)
    elif operation == "messages":
        _anthropic(body, parts)
    elif operation == "completions":
        _completions(body, parts)
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0]
    return "\n".join(parts)


def _chat(body: Mapping[str, Any], out: list[str]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            if content:
                out.append(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    kind = part.get("type")
                    key = _OPENAI_TEXT_PARTS.get(kind) if isinstance(kind, str) else None
                    if key is not None:
                        text = part.get(key)
                        if isinstance(text, str) and text:
                            out.append(text)
                elif isinstance(part, str) and part:
                    out.append(part)
        calls = msg.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    _arguments(call.get("function"), out)
        _arguments(msg.get("function_call"), out)


def _arguments(function: Any, out: list[str]) -> None:
    if isinstance(function, dict):
        args = function.get("arguments")
        if isinstance(args, str) and args:
            out.append(args)


def _completions(body: Mapping[str, Any], out: list[str]) -> None:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        if prompt:
            out.append(prompt)
    elif isinstance(prompt, list):
        out.extend(p for p in prompt if isinstance(p, str) and p)
    suffix = body.get("suffix")
    if isinstance(suffix, str) and suffix:
        out.append(suffix)


def _anthropic(body: Mapping[str, Any], out: list[str]) -> None:
    system = body.get("system")
    if isinstance(system, str):
        if system:
            out.append(system)
    elif isinstance(system, list):
        _anthropic_blocks(system, out)
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            if content:
                out.append(content)
        elif isinstance(content, list):
            _anthropic_blocks(content, out)


def _anthropic_blocks(blocks: list[Any], out: list[str], depth: int = 0) -> None:
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if isinstance(text, str) and text:
                out.append(text)
        elif kind == "tool_result" and depth == 0:
            content = block.get("content")
            if isinstance(content, str):
                if content:
                    out.append(content)
            elif isinstance(content, list):
                _anthropic_blocks(content, out, depth + 1)
        elif kind == "document":
            source = block.get("source")
            if isinstance(source, dict) and source.get("type") == "text":
                data = source.get("data")
                if isinstance(data, str) and data:
                    out.append(data)
