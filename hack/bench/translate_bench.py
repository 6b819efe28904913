"""Micro-benchmark of the stream translators: microseconds of CPU per upstream chunk.

Run: ``.venv/bin/python hack/bench/translate_bench.py`` (add ``--json`` for machine-readable output).

The hot path is ``openai_openai`` (every pass-through stream): a chunk is one SSE event as an upstream
socket read usually delivers it. Scenarios:

- ``vllm``: vLLM-style chunks (no usage key), one event per read;
- ``openai``: OpenAI-style chunks (``"usage":null`` in each, ``obfuscation`` padding), one event per read;
- ``split``: the vLLM chunks cut in two reads each (an event split mid-line);
- ``whole-stream``: 200 content chunks + the usage chunk (parsed, stripped) + ``[DONE]``, per chunk.

The re-framing translators (``openai_anthropic``, ``anthropic_openai``) and the Anthropic pass-through are
measured the same way for comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

from newapi_gateway.translate import get_translator
from newapi_gateway.translate.base import StreamTranslator

CONTENT = "The quick brown fox jumps over the lazy dog"


def openai_chunk(i: int, openai_style: bool) -> bytes:
    chunk: dict[str, object] = {
        "id": "chatcmpl-5d2b5a8f0c3e4f6a9b1d7e2c4a6f8b0d",
        "object": "chat.completion.chunk",
        "created": 1756300200,
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "choices": [{"index": 0, "delta": {"content": f" word{i}"}, "logprobs": None, "finish_reason": None}],
    }
    if openai_style:
        chunk["service_tier"] = "default"
        chunk["system_fingerprint"] = "fp_560af6e559"
        chunk["usage"] = None
        chunk["obfuscation"] = "k2Pz1Q"
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


USAGE_CHUNK = (
    b'data: {"id":"chatcmpl-5d2b","object":"chat.completion.chunk","created":1756300200,"model":"m","choices":[],'
    b'"usage":{"prompt_tokens":31,"total_tokens":236,"completion_tokens":205}}\n\n'
)


def anthropic_delta(i: int) -> bytes:
    data = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f" word{i}"}}
    return b"event: content_block_delta\ndata: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


ANTHROPIC_HEAD = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_01","type":"message",'
    b'"role":"assistant","content":[],"model":"claude","stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":25,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
)


def measure(make: Callable[[], StreamTranslator], reads: list[bytes], per: int, rounds: int) -> float:
    """Best-of-``rounds`` microseconds per chunk (``per`` chunks in ``reads``)."""
    results = []
    for _ in range(rounds):
        stream = make()
        start = time.perf_counter_ns()
        feed = stream.feed
        for read in reads:
            feed(read)
        stream.finish()
        results.append((time.perf_counter_ns() - start) / per / 1000)
    return min(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=2000, help="chunks per measured stream")
    parser.add_argument("--rounds", type=int, default=15, help="repetitions; the best is reported")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    n = args.chunks

    oo = get_translator("openai", "openai")
    plain_request = {"model": "m", "messages": [], "stream": True}
    vllm = [openai_chunk(i, openai_style=False) for i in range(n)]
    openai_reads = [openai_chunk(i, openai_style=True) for i in range(n)]
    split = [piece for c in vllm for piece in (c[: len(c) // 2], c[len(c) // 2 :])]
    whole = [openai_chunk(i, openai_style=False) for i in range(200)] + [USAGE_CHUNK, b"data: [DONE]\n\n"]

    oa = get_translator("openai", "anthropic")
    ao = get_translator("anthropic", "openai")
    aa = get_translator("anthropic", "anthropic")
    anthropic_reads = [ANTHROPIC_HEAD] + [anthropic_delta(i) for i in range(n)]

    results = {
        "openai_openai vllm (1 event/read)": measure(lambda: oo.stream("chat", plain_request), vllm, n, args.rounds),
        "openai_openai openai-style (1 event/read)": measure(
            lambda: oo.stream("chat", plain_request), openai_reads, n, args.rounds
        ),
        "openai_openai split (2 reads/event)": measure(lambda: oo.stream("chat", plain_request), split, n, args.rounds),
        "openai_openai whole stream incl. usage strip": measure(
            lambda: oo.stream("chat", plain_request), whole, len(whole), args.rounds
        ),
        "anthropic_anthropic (1 event/read)": measure(
            lambda: aa.stream("messages", plain_request), anthropic_reads, n + 1, args.rounds
        ),
        "openai_anthropic (1 event/read)": measure(
            lambda: oa.stream("chat", plain_request), anthropic_reads, n + 1, args.rounds
        ),
        "anthropic_openai (1 event/read)": measure(lambda: ao.stream("messages", plain_request), vllm, n, args.rounds),
    }
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in results.items()}, indent=2))
        return
    width = max(map(len, results))
    print(f"{'scenario':<{width}}  µs/chunk")
    for name, value in results.items():
        print(f"{name:<{width}}  {value:8.2f}")
    hot = [v for k, v in results.items() if k.startswith("openai_openai")]
    print(f"\nopenai_openai median across scenarios: {statistics.median(hot):.2f} µs/chunk (target: well under 50)")


if __name__ == "__main__":
    main()
