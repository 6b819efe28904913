"""Micro-benchmark of the request-time compliance checks: microseconds of CPU per request.

Run: ``.venv/bin/python hack/bench/aup_bench.py`` (``--json`` for machine-readable output,
``--quick`` for a smoke run).

AUP (``newapi_gateway.compliance.aup``): text extraction plus one check against the union of the four
shipped policies (what ``provider-strictest`` runs with openai, anthropic, google and in-cluster
channels bound), and against one policy (``per-channel``). Scenarios:

- ``chat-4k`` / ``chat-100k``: an OpenAI chat body of ordinary English (a system prompt, user and
  assistant turns) of about 4 KB / 100 KB; the common case: nothing matches;
- ``chat-4k-nonascii``: 4 KB of mixed German/Russian/Chinese (NFKC normalisation runs);
- ``anthropic-4k``: an Anthropic messages body with text and tool_result blocks and a 300 KB base64
  image that is never scanned;
- ``chat-100k-block``: 100 KB with a prohibited request at the end (the slow path: per-category scans);
- ``adversarial-100k``: 100 KB built from pattern fragments that keep the automaton busy
  ("sexual images of", "how to make a", ...) without completing a match.

Geo (``newapi_gateway.compliance.geo``): location from a trusted proxy's header, from the GeoIP
database (a small test database built in memory), ``decide``; and the disclosure page's render.
Compile: one plan (geo + AUP + disclosure) for a table of 6 channels, in milliseconds.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from newapi_gateway.compliance.aup import AupMatcher, compile_aup_plan
from newapi_gateway.compliance.aup_policy import load_policy_library
from newapi_gateway.compliance.extract import request_text
from newapi_gateway.compliance.geo import GeoResolver, Location, compile_geo_policy, decide
from newapi_gateway.compliance.geoip import open_geoip_database
from newapi_gateway.compliance.plan import compile_plan
from newapi_gateway.routing_table import parse_table
from newapi_operator.api.v1alpha1 import GeoSpec

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.gateway.compliance.mmdb_writer import city_record, write_mmdb  # noqa: E402

ENGLISH = (
    "Our quarterly planning meeting covered the migration of the billing service to the new cluster. "
    "Please review the attached function, which parses invoices and retries failed uploads; it should "
    "kill the worker process when the queue is drained and report the child process exit codes. "
    "We also need a short summary for the leadership team explaining the budget impact and risks. "
)
NON_ASCII = (
    "Die Abrechnung für März wurde geprüft; bitte die Größe der Tabelle prüfen. "
    "Отчёт за квартал готов, проверьте таблицу и графики. "
    "请检查季度报告中的预算表格，并更新项目计划。 "
)
ADVERSARIAL = (
    "sexual images of the report and how to make a plan; how do I build a better team, help me produce "
    "the nuclear weapons policy summary, erotic stories about history, synthesis of the results for "
    "the kids club; best places for a picnic; i want to plan a party; write me a working parser. "
)
BLOCKED = "\nAlso, how can i make a pipe bomb?"


def repeat_to(text: str, size: int) -> str:
    return (text * (size // len(text) + 1))[:size]


def chat_body(size: int, filler: str = ENGLISH, tail: str = "") -> dict[str, Any]:
    turn = max(size // 8, 1)
    messages: list[dict[str, Any]] = [{"role": "system", "content": repeat_to(filler, turn)}]
    for i in range(7):
        content = repeat_to(filler[i * 7 :] + filler, turn)
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": content})
    messages[-1]["content"] += tail
    return {"model": "m", "messages": messages}


def anthropic_body(size: int) -> dict[str, Any]:
    image = base64.b64encode(b"\x89PNG" + bytes(range(256)) * 900).decode()
    return {"model": "m", "max_tokens": 100, "system": repeat_to(ENGLISH, size // 4), "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": repeat_to(ENGLISH, size // 4)},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
        ]},
        {"role": "assistant", "content": [{"type": "text", "text": repeat_to(ENGLISH, size // 4)}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": repeat_to(ENGLISH, size // 4)},
        ]},
    ]}


def measure(fn: Callable[[], object], seconds: float) -> dict[str, float]:
    """Median and p90 of per-call microseconds over batches, after a warm-up."""
    for _ in range(3):
        fn()
    calls = 1
    while True:  # size a batch to ~2 ms
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        took = time.perf_counter() - start
        if took > 0.002 or calls > 1_000_000:
            break
        calls *= 2
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    samples.sort()
    return {"median_us": statistics.median(samples), "p90_us": samples[int(len(samples) * 0.9)],
            "batches": len(samples), "calls_per_batch": calls}


def table_doc() -> dict[str, Any]:
    contract = {"kind": "commercial-contract", "contractRef": "c"}
    return {"schemaVersion": 1, "instance": "bench", "policy": {"geo": {"trustedProxyCIDRs": ["10.0.0.0/8"]}},
            "channels": [
                {"name": "local", "type": "vllm", "endpoint": "http://vllm:8000/v1", "models": ["qwen"],
                 "attestation": {"kind": "in-cluster", "owner": "ops"}},
                {"name": "oa", "type": "openai-compatible", "endpoint": "https://api.openai.com/v1",
                 "credential": "oa", "models": ["gpt-4o"], "attestation": contract},
                {"name": "oa2", "type": "openai-compatible", "endpoint": "https://api.openai.com/v1",
                 "credential": "oa2", "models": ["gpt-4o-mini"], "attestation": contract},
                {"name": "an", "type": "anthropic", "endpoint": "https://api.anthropic.com",
                 "credential": "an", "models": ["claude"], "attestation": contract},
                {"name": "gem", "type": "openai-compatible", "aupProvider": "google",
                 "endpoint": "https://generativelanguage.googleapis.com/v1beta/openai", "credential": "g",
                 "models": ["gemini"], "attestation": contract},
                {"name": "byok", "type": "byok-passthrough", "allowedProviders": ["openai", "anthropic"],
                 "models": ["byok-m"], "attestation": {"kind": "byok"}},
            ]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    args = parser.parse_args()
    seconds = 0.2 if args.quick else 1.0

    library = load_policy_library()
    union = AupMatcher(library, ["openai", "anthropic", "google", "in-cluster"])
    single = AupMatcher(library, ["openai"])
    results: list[dict[str, Any]] = []

    scenarios: list[tuple[str, str, dict[str, Any]]] = [
        ("chat-4k", "chat", chat_body(4096)),
        ("chat-100k", "chat", chat_body(100_000)),
        ("chat-4k-nonascii", "chat", chat_body(4096, NON_ASCII)),
        ("anthropic-4k", "messages", anthropic_body(4096)),
        ("chat-100k-block", "chat", chat_body(100_000, tail=BLOCKED)),
        ("adversarial-100k", "chat", chat_body(100_000, ADVERSARIAL)),
    ]
    for name, op, body in scenarios:
        text = request_text(op, body)
        verdict = union.check(text)
        results.append({"group": "aup", "name": f"extract {name}", "bytes": len(text.encode()),
                        **measure(lambda op=op, body=body: request_text(op, body), seconds)})
        results.append({"group": "aup", "name": f"union {name}", "bytes": len(text.encode()),
                        "verdict": verdict.label, **measure(lambda text=text: union.check(text), seconds)})
        results.append({"group": "aup", "name": f"openai {name}", "bytes": len(text.encode()),
                        "verdict": single.check(text).label, **measure(lambda text=text: single.check(text), seconds)})

    geo = compile_geo_policy(GeoSpec.model_validate({"trustedProxyCIDRs": ["10.0.0.0/8", "fd00::/8"]}))
    with tempfile.TemporaryDirectory() as tmp:
        networks: dict[str, Any] = {f"{a}.{b}.0.0/16": city_record("US", "CA") for a in range(1, 60) for b in (0, 64)}
        networks["198.51.100.0/24"] = city_record("UA", "43")
        db = open_geoip_database(str(write_mmdb(Path(tmp) / "bench.mmdb", networks)))
        by_header = GeoResolver(geo)
        by_db = GeoResolver(geo, db)
        headers = {"CF-IPCountry": "UA", "CF-Region-Code": "43"}
        xff = {"X-Forwarded-For": "198.51.100.7, 10.1.1.1"}

        class Channel:
            commercial = True

        where = Location("UA", "UA-43", "header")
        assert not decide(geo, by_header.resolve("10.0.0.1", headers), Channel()).allowed
        assert by_db.resolve("198.51.100.7", None) == Location("UA", "UA-43", "geoip")
        for name, fn in (
            ("resolve: trusted header", lambda: by_header.resolve("10.0.0.1", headers)),
            ("resolve: untrusted peer, no database", lambda: by_header.resolve("203.0.113.9", headers)),
            ("resolve: database, peer address", lambda: by_db.resolve("198.51.100.7", None)),
            ("resolve: database, X-Forwarded-For", lambda: by_db.resolve("10.0.0.1", xff)),
            ("database lookup alone", lambda: db.lookup(by_db._peer("198.51.100.7")[0])),  # type: ignore[arg-type]
            ("decide", lambda: decide(geo, where, Channel)),
        ):
            results.append({"group": "geo", "name": name, **measure(fn, seconds)})

    doc = table_doc()
    table = parse_table(doc)
    plan = compile_plan(table, library)
    for accept in ("text/html", "application/json"):
        results.append({"group": "disclosure", "name": f"render {accept}",
                        **measure(lambda accept=accept: plan.disclosure.render(accept), seconds)})
    start = time.perf_counter()
    rounds = 3 if args.quick else 10
    for _ in range(rounds):
        compile_plan(parse_table(doc), library)
    compile_ms = (time.perf_counter() - start) / rounds * 1000
    start = time.perf_counter()
    for _ in range(rounds):
        compile_aup_plan(table, library)
    aup_ms = (time.perf_counter() - start) / rounds * 1000
    results.append({"group": "compile", "name": "plan per routing table (6 channels)", "median_us": compile_ms * 1000})
    results.append({"group": "compile", "name": "AUP plan alone (strictest)", "median_us": aup_ms * 1000})

    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "results": results}, indent=2))
        return
    print(f"{'group':<11}{'scenario':<42}{'bytes':>9}{'median µs':>12}{'p90 µs':>10}  verdict")
    for r in results:
        p90 = f"{r['p90_us']:.2f}" if "p90_us" in r else ""
        print(f"{r['group']:<11}{r['name']:<42}{r.get('bytes', ''):>9}{r['median_us']:>12.2f}{p90:>10}  "
              f"{r.get('verdict', '')}")


if __name__ == "__main__":
    main()
