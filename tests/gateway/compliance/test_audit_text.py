"""Prompt and completion text for the audit log: what is read from requests, answers and streams."""

from __future__ import annotations

import json

from newapi_gateway.compliance.audit_text import (
    MAX_CHARS,
    clip,
    completion_text,
    prompt_text,
    stream_completion_text,
)


def test_prompt_text_per_operation() -> None:
    chat = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]}
    assert prompt_text("chat", chat) == "be brief\nhello"
    assert prompt_text("completions", {"prompt": ["a", "b"]}) == "a\nb"
    assert prompt_text("messages", {"system": "sys", "messages": [{"role": "user", "content": "hi"}]}) == "sys\nhi"
    assert prompt_text("embeddings", {"input": "embed me"}) == "embed me"
    assert prompt_text("embeddings", {"input": ["x", 3, "y"]}) == "x\ny"
    assert prompt_text("embeddings", {"input": [[1, 2]]}) == ""


def test_completion_of_openai_and_anthropic_answers() -> None:
    openai_chat = {"choices": [{"message": {"content": "Paris", "tool_calls": [
        {"function": {"name": "f", "arguments": '{"a":1}'}}]}}]}
    assert completion_text(json.dumps(openai_chat).encode()) == 'Paris{"a":1}'
    assert completion_text(json.dumps({"choices": [{"text": "done"}]}).encode()) == "done"
    anthropic = {"content": [{"type": "text", "text": "Hi "}, {"type": "tool_use", "input": {"q": "x"}}]}
    assert completion_text(json.dumps(anthropic).encode()) == 'Hi {"q":"x"}'
    assert completion_text(b"not json") == ""
    assert completion_text(None) == ""
    assert completion_text(b"[1,2]") == ""


def test_stream_completion_reads_events_split_across_chunks() -> None:
    events = [
        b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n',
        b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n',
        b'data: {"choices":[{"delta":{"content":"lo"}}]}\n\ndata: [DONE]\n\n',
    ]
    joined = b"".join(events)
    chunks = [joined[:30], joined[30:71], joined[71:]]
    assert stream_completion_text(chunks) == "Hello"
    def delta(text: str) -> bytes:
        event = {"type": "content_block_delta", "delta": {"type": "text_delta", "text": text}}
        return b"event: content_block_delta\ndata: " + json.dumps(event).encode() + b"\n\n"

    anthropic = [delta("Bon"), delta("jour"), b'event: message_stop\ndata: {"type":"message_stop"}\n\n']
    assert stream_completion_text(anthropic) == "Bonjour"
    assert stream_completion_text([b"data: {broken\n\n"]) == ""


def test_clip_keeps_the_limit_and_says_what_was_cut() -> None:
    assert clip("short") == "short"
    long = "x" * (MAX_CHARS + 10)
    out = clip(long)
    assert out.startswith("x" * MAX_CHARS)
    assert "10 more characters" in out
