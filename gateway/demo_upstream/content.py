"""Deterministic content of the demo upstream: what it "generates" and how it counts tokens.

Pure functions, no I/O. The rules (documented in the package docstring, relied on by tests):

- **Tokens are whitespace-separated words**: ``count_tokens(text) == len(text.split())``.
- **Prompt tokens** are the words of every text the request carries: the system prompt, every
  message's string content or ``text`` parts, and tool results' text (tool-call arguments,
  images and tool definitions count nothing). Completions count the prompt's words (a token
  array counts its length); embeddings count each input the same way.
- **The reply** is ``"echo: " + <the words of the last user message>`` (OpenAI: last ``user`` or
  ``tool`` message; Anthropic: last ``user`` message), whitespace-normalised and with
  ``[[demo:...]]`` markers removed. With ``tokens=N`` it is instead the first N words of a fixed
  lorem ipsum. Completion tokens are the reply's words (plus a tool call's argument words).
- **``max_tokens``** (or ``max_completion_tokens``) below the reply's length truncates it to that
  many words and the stop reason becomes ``length`` / ``max_tokens``.
- **Streams** send one word per content chunk: ``"echo:"``, ``" hello"``, ``" world"``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

#: ``[[demo:SPEC]]`` in the last user message sets behaviour for that request (see ``behavior``).
MARKER_RE = re.compile(r"\[\[demo:([^\]]*)\]\]")

_LOREM_TEXT = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris "
    "nisi ut aliquip ex ea commodo consequat"
)
LOREM: tuple[str, ...] = tuple(_LOREM_TEXT.split(" "))

#: Default embedding size when the request gives no ``dimensions``.
DEFAULT_EMBEDDING_DIMENSIONS = 16

StopKind = Literal["stop", "length", "tool"]


def count_tokens(text: str) -> int:
    """The demo token rule: whitespace-separated words."""
    return len(text.split())


def strip_markers(text: str) -> tuple[str, list[str]]:
    """Remove ``[[demo:...]]`` markers; return the clean text and the marker specs in order."""
    specs = MARKER_RE.findall(text)
    if not specs:
        return text, []
    return MARKER_RE.sub(" ", text), specs


def lorem(n: int) -> list[str]:
    """The first ``n`` words of the fixed lorem ipsum (cycled)."""
    return [LOREM[i % len(LOREM)] for i in range(max(n, 0))]


def stream_pieces(words: Sequence[str]) -> list[str]:
    """One stream piece per word, spaces leading: ``["echo:", " hi", " there"]``."""
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def json_fragments(text: str) -> list[str]:
    """Split a JSON text into stream fragments after each space (joined they give ``text``)."""
    parts = text.split(" ")
    return [p + " " for p in parts[:-1]] + [parts[-1]]


# --------------------------------------------------------------------------------------------
# Text found in requests
# --------------------------------------------------------------------------------------------


def _parts_text(content: Any) -> list[str]:
    """Texts of a content value: a string, or a list of parts/blocks (``text`` and tool results)."""
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Mapping):
                kind = part.get("type")
                if kind in ("text", "input_text") and isinstance(part.get("text"), str):
                    out.append(part["text"])
                elif kind == "tool_result":
                    out.extend(_parts_text(part.get("content")))
    return out


def _messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, Mapping)]


def openai_prompt_texts(body: Mapping[str, Any]) -> list[str]:
    """Every text of an OpenAI chat request (system/developer/user/assistant/tool contents)."""
    texts: list[str] = []
    for message in _messages(body):
        texts.extend(_parts_text(message.get("content")))
    return texts


def anthropic_prompt_texts(body: Mapping[str, Any]) -> list[str]:
    """Every text of an Anthropic Messages request (``system`` plus message contents)."""
    texts = _parts_text(body.get("system"))
    for message in _messages(body):
        texts.extend(_parts_text(message.get("content")))
    return texts


def last_user_text(body: Mapping[str, Any], roles: Iterable[str]) -> str:
    """The text of the last message whose role is in ``roles`` ("" when there is none)."""
    wanted = set(roles)
    for message in reversed(_messages(body)):
        if message.get("role") in wanted:
            return " ".join(_parts_text(message.get("content")))
    return ""


def input_tokens(texts: Iterable[str]) -> int:
    """Prompt tokens of a list of texts."""
    return sum(count_tokens(t) for t in texts)


def prompt_input_tokens(prompt: Any) -> int:
    """Tokens of a completions prompt / embeddings input item: a string or a token-id array."""
    if isinstance(prompt, str):
        return count_tokens(prompt)
    if isinstance(prompt, list):
        if all(isinstance(x, int) for x in prompt):
            return len(prompt)
        return sum(prompt_input_tokens(x) for x in prompt)
    return 0


# --------------------------------------------------------------------------------------------
# The reply
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """A tool call the demo model makes: tool name and its arguments as a JSON text."""

    name: str
    arguments: str

    @property
    def tokens(self) -> int:
        return count_tokens(self.arguments)


@dataclass(frozen=True)
class Reply:
    """What the demo model answers to one request, before any wire format is applied."""

    words: tuple[str, ...]
    stop: StopKind
    input_tokens: int
    tool: ToolCall | None = None

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def pieces(self) -> list[str]:
        return stream_pieces(self.words)

    @property
    def output_tokens(self) -> int:
        return len(self.words) + (self.tool.tokens if self.tool else 0)


def reply_words(user_text: str, tokens: int | None) -> list[str]:
    """The reply's words: ``tokens`` lorem words, or ``echo:`` and the user's words."""
    if tokens is not None:
        return lorem(tokens)
    clean, _ = strip_markers(user_text)
    return ["echo:", *clean.split()]


def truncate(words: list[str], max_tokens: Any) -> tuple[list[str], bool]:
    """Cut ``words`` to ``max_tokens`` when it is a smaller positive int; say whether it was cut."""
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and 0 < max_tokens < len(words):
        return words[:max_tokens], True
    return words, False


def example_value(schema: Any) -> Any:
    """A deterministic value that fits a (simple) JSON schema."""
    if not isinstance(schema, Mapping):
        return "demo"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return example_arguments(schema)
    return {"integer": 1, "number": 1.5, "boolean": True, "array": [], "null": None}.get(str(kind), "demo")


def example_arguments(schema: Any) -> dict[str, Any]:
    """Arguments for a tool: every declared property with :func:`example_value`."""
    if not isinstance(schema, Mapping):
        return {}
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return {}
    return {str(name): example_value(sub) for name, sub in props.items()}


def tool_call_for(name: str, schema: Any) -> ToolCall:
    """The demo model's call of tool ``name`` whose parameters are ``schema``."""
    return ToolCall(name=name, arguments=json.dumps(example_arguments(schema)))


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


def embedding_vector(item: Any, dimensions: int) -> list[float]:
    """A deterministic unit vector for one input (a string or token ids), from its SHA-256."""
    seed = json.dumps(item, separators=(",", ":")).encode()
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        raw.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    raw = raw[:dimensions]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    # Rounded to float32 precision so the float and base64 encodings carry the same numbers.
    return [struct.unpack("<f", struct.pack("<f", x / norm))[0] for x in raw]


def embedding_base64(vector: Sequence[float]) -> str:
    """OpenAI's ``encoding_format: base64``: little-endian float32 array, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
