#!/usr/bin/env python3
"""Gateway benchmark: one command, one run, every scenario against the same demo upstream.

    python hack/bench/run.py [--quick] [--out results.json] [--scenarios direct,nginx,gateway]

Layout: the system under test alone on CPU 0 (``taskset -c 0``); this process, the load
generator (wrk, the Python sequential clients) and the mock upstream (the demo upstream) on
CPU 1. Prints a table and writes JSON. See hack/bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gatewaybench import httpclient, peers, procs, report, scenarios, stats, wrk

from newapi_gateway.demo_upstream import DemoUpstreamProcess

PROMPT = "Say something short about benchmarks please"
NON_STREAM_BODY = {"model": scenarios.BENCH_MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64}
STREAM_BODY = {**NON_STREAM_BODY, "stream": True}


@dataclass(frozen=True)
class Plan:
    """How long/how many for each measurement."""

    warmup_s: float
    wrk_s: float
    one_conn: int
    one_conn_warmup: int
    streams: int
    stream_warmup: int


FULL = Plan(warmup_s=2, wrk_s=10, one_conn=3000, one_conn_warmup=300, streams=1000, stream_warmup=100)
QUICK = Plan(warmup_s=1, wrk_s=3, one_conn=500, one_conn_warmup=100, streams=200, stream_warmup=20)


def make_scenarios(
    gateway_cmd: str, fullpath_cmd: str = scenarios.DEFAULT_FULLPATH_COMMAND, load_cpu: int = 1
) -> dict[str, scenarios.Scenario]:
    return {
        "direct": scenarios.Direct(),
        "nginx": scenarios.Nginx(),
        "gateway": scenarios.Gateway(command=gateway_cmd),
        "fullpath": scenarios.FullPath(command=fullpath_cmd, load_cpu=load_cpu),
        "fullpath-noaudit": scenarios.FullPath(command=fullpath_cmd, load_cpu=load_cpu, audit=False),
        # issue 8's peers (hack/bench/compare.py runs them side by side, with the soak, keys, Channel apply)
        "litellm": peers.LiteLLM(),
        "portkey": peers.Portkey(),
    }


#: Issue 5's full-path targets: against the pass-through gateway and direct, in the same run.
FULLPATH_TARGETS: tuple[tuple[str, str, float, str], ...] = (
    ("rps_c32_vs_gateway", ">=", 0.7, "full path req/s at 32 conns >= 0.7x pass-through"),
    ("rps_c128_vs_gateway", ">=", 0.7, "full path req/s at 128 conns >= 0.7x pass-through"),
    ("added_p50_1conn_ms_vs_direct", "<=", 0.8, "full path added p50 at one connection <= 0.8 ms over direct"),
)


def fullpath_summary(results: dict[str, dict[str, Any]], name: str = "fullpath") -> dict[str, Any]:
    """Full path (scenario ``name``) vs pass-through vs direct (pure): ratios, targets and state
    operations per request."""
    full = results.get(name, {})
    if not full.get("available"):
        return {}
    m = report.metrics(full)
    ratios: dict[str, float | None] = {}
    for ref in ("gateway", "direct"):
        if results.get(ref, {}).get("available"):
            r = report.metrics(results[ref])
            for key in ("rps_c32", "rps_c128"):
                ratios[f"{key}_vs_{ref}"] = round(m[key] / r[key], 3) if m[key] and r[key] else None
            for key in ("p50_1conn", "cpu_ms_per_req"):
                added = m[key] - r[key] if m[key] is not None and r[key] is not None else None
                ratios[f"added_{key}{'_ms' if key == 'p50_1conn' else ''}_vs_{ref}"] = (
                    round(added, 3) if added is not None else None)
    targets = []
    for key, op, limit, text in FULLPATH_TARGETS:
        value = ratios.get(key)
        status = "not measured" if value is None else (
            "pass" if (value >= limit if op == ">=" else value <= limit) else "FAIL")
        targets.append({"target": text, "key": key, "value": value, "status": status})
    return {"scenario": name, "ratios": ratios, "targets": targets,
            "state_per_request": full.get("state_per_request", {})}


def fullpath_table(summary: dict[str, Any]) -> str:
    if not summary:
        return ""
    lines = ["", f"full path (issue 5), scenario {summary.get('scenario', 'fullpath')}:"]
    lines.append("  " + ", ".join(f"{k}={v}" for k, v in summary["ratios"].items()))
    for run_name, per in summary["state_per_request"].items():
        shown = ", ".join(f"{k}={v}" for k, v in per.items())
        lines.append(f"  state operations per request ({run_name}): {shown}")
    for t in summary["targets"]:
        lines.append(f"  [{t['status']}] {t['target']} (measured {t['value']})")
    return "\n".join(lines)


def _smoke(target: scenarios.Target) -> None:
    """One non-stream and one stream request must succeed with the demo's answer (else figures lie)."""
    url = target.url + scenarios.CHAT_PATH
    request = urllib.request.Request(
        url,
        data=json.dumps(NON_STREAM_BODY).encode(),
        headers={"Content-Type": "application/json", **target.headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"smoke request answered {exc.code}: {exc.read()[:300]!r}") from None
    text = body["choices"][0]["message"]["content"]
    if not text.startswith("echo:"):
        raise RuntimeError(f"smoke request got an unexpected answer: {text!r}")
    raw = httpclient.build_request("POST", url, json.dumps(STREAM_BODY).encode(), _headers(target))
    timing = httpclient.run_sequential(target.url, raw, count=1, warmup=0, watch_stream=True)[0]
    if timing.status != 200 or timing.done_ns is None:
        raise RuntimeError(f"smoke stream failed: status {timing.status}, [DONE] seen: {timing.done_ns is not None}")


def _headers(target: scenarios.Target) -> dict[str, str]:
    return {"Content-Type": "application/json", **target.headers}


def _wrk(target: scenarios.Target, script: Path, connections: int, seconds: float) -> wrk.WrkResult:
    cmd = wrk.wrk_command(target.url + scenarios.CHAT_PATH, str(script), connections, seconds)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return wrk.parse_output(done.stdout)


def measure(target: scenarios.Target, plan: Plan, workdir: Path) -> dict[str, Any]:
    """All measurements of one scenario."""
    _smoke(target)
    script = workdir / "post.lua"
    script.write_text(wrk.lua_script("POST", json.dumps(NON_STREAM_BODY), _headers(target)))
    tree = procs.process_tree(target.pid)
    _wrk(target, script, 32, plan.warmup_s)
    result: dict[str, Any] = {"available": True, "note": target.note}
    state: dict[str, dict[str, float]] = {}
    before = target.counters() if target.counters else None
    c32 = _wrk(target, script, 32, plan.wrk_s)
    result["c32"] = c32.to_json()
    if target.counters and before is not None:
        state["c32"] = _per_request(before, target.counters(), c32.requests)
        before = target.counters()
    cpu_before = procs.cpu_seconds(tree)
    c128 = _wrk(target, script, 128, plan.wrk_s)
    cpu_used = procs.cpu_seconds(tree) - cpu_before
    result["c128"] = c128.to_json()
    if target.counters and before is not None:
        state["c128"] = _per_request(before, target.counters(), c128.requests)
    if state:
        result["state_per_request"] = state
    result["cpu_ms_per_req"] = round(cpu_used * 1000 / c128.requests, 4) if c128.requests else None

    raw = httpclient.build_request(
        "POST", target.url + scenarios.CHAT_PATH, json.dumps(NON_STREAM_BODY).encode(), _headers(target)
    )
    timings = httpclient.run_sequential(target.url, raw, plan.one_conn, plan.one_conn_warmup)
    result["one_conn"] = {
        **stats.summarize_ns([t.total_ns for t in timings]),
        "errors": sum(1 for t in timings if t.status != 200),
    }
    raw = httpclient.build_request(
        "POST", target.url + scenarios.CHAT_PATH, json.dumps(STREAM_BODY).encode(), _headers(target)
    )
    streams = httpclient.run_sequential(target.url, raw, plan.streams, plan.stream_warmup, watch_stream=True)
    good = [t for t in streams if t.status == 200 and t.first_data_ns is not None and t.done_ns is not None]
    result["stream"] = {
        "n": len(streams),
        "errors": len(streams) - len(good),
        "first_chunk": stats.summarize_ns([t.first_data_ns for t in good if t.first_data_ns is not None])
        if good
        else None,
        "done": stats.summarize_ns([t.done_ns for t in good if t.done_ns is not None]) if good else None,
    }
    result["memory"] = procs.memory_kb(procs.process_tree(target.pid))
    return result


def _per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """Counter deltas divided by the run's requests (e.g. PostgreSQL transactions per request)."""
    if not requests:
        return {}
    return {k: round((after[k] - before.get(k, 0.0)) / requests, 4) for k in after}


def _version(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Gateway benchmark (see hack/bench/README.md).")
    p.add_argument("--quick", action="store_true", help="short smoke run (~1 minute)")
    p.add_argument("--out", default="bench-results.json", help="JSON results file (default bench-results.json)")
    p.add_argument("--scenarios", default="direct,nginx,gateway,fullpath,fullpath-noaudit",
                   help="comma-separated (direct, nginx, gateway, fullpath, fullpath-noaudit; also litellm, "
                   "portkey)")
    p.add_argument(
        "--gateway-cmd",
        default=scenarios.DEFAULT_GATEWAY_COMMAND,
        help="gateway command template; placeholders {newapi} {port} {routes} {keys} {credentials}",
    )
    p.add_argument(
        "--fullpath-cmd",
        default=scenarios.DEFAULT_FULLPATH_COMMAND,
        help="full-path gateway command template; placeholders {newapi} {port} {routes} {credentials} "
        "{database_url} {redis_url} {admin_port} {admin_token_file}",
    )
    p.add_argument("--sut-cpu", default="0", help="CPU(s) of the system under test (default 0)")
    p.add_argument("--load-cpu", type=int, default=1, help="CPU of the load generator and upstream (default 1)")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing wrk/nginx-light")
    p.add_argument("--keep-workdir", action="store_true", help="keep the temporary directory (configs, logs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    available = os.sched_getaffinity(0)
    sut_cpus = {int(c) for c in args.sut_cpu.split(",")}
    if args.load_cpu not in available or not sut_cpus <= available or args.load_cpu in sut_cpus:
        print(
            f"bench: needs distinct CPUs for the system under test ({args.sut_cpu}) and the load ({args.load_cpu}); "
            f"this process may use {sorted(available)}. Pass --sut-cpu/--load-cpu.",
            file=sys.stderr,
        )
        return 2
    try:
        tools = procs.ensure_tools(install=not args.no_install)
    except procs.BenchSetupError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    all_scenarios = make_scenarios(args.gateway_cmd, args.fullpath_cmd, args.load_cpu)
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in all_scenarios]
    if unknown:
        print(f"bench: unknown scenario(s) {unknown}; known: {', '.join(all_scenarios)}", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {args.load_cpu})  # this process, wrk and the upstream: the load side
    workdir = Path(tempfile.mkdtemp(prefix="newapi-bench-"))
    started = time.time()
    load_before = os.getloadavg()
    upstream = DemoUpstreamProcess.spawn(name="bench", record=0, cpus=str(args.load_cpu))
    results: dict[str, dict[str, Any]] = {}
    try:
        ctx = scenarios.Context(
            upstream_url=upstream.url, upstream_pid=upstream.pid, workdir=workdir, sut_cpus=args.sut_cpu, tools=tools,
            load_cpu=args.load_cpu,
        )
        for name in chosen:
            scenario = all_scenarios[name]
            print(f"==> {name}: {scenario.description}", file=sys.stderr, flush=True)
            try:
                target = scenario.start(ctx)
            except scenarios.Unavailable as exc:
                results[name] = {"available": False, "reason": str(exc)}
                print(f"    not available: {exc}", file=sys.stderr)
                continue
            try:
                results[name] = {"description": scenario.description, **measure(target, plan, workdir)}
            except Exception as exc:  # a broken system under test is reported, the others still run
                results[name] = {"available": False, "reason": f"failed during measurement: {exc}"}
                print(f"    failed: {exc}", file=sys.stderr)
            finally:
                target.close()
    finally:
        upstream.stop()
    ratio_table = report.ratios(results)
    fullpath = fullpath_summary(results)
    fullpath_noaudit = fullpath_summary(results, "fullpath-noaudit")
    elapsed = round(time.time() - started, 1)
    document: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "elapsed_s": elapsed,
            "quick": args.quick,
            "plan": plan.__dict__,
            "layout": f"system under test on CPU {args.sut_cpu}; "
            f"wrk, sequential clients and demo upstream on CPU {args.load_cpu}",
            "cpu": _cpu_model(),
            "cpus_online": os.cpu_count(),
            # Other work on the machine skews the figures: compare these with the CPUs in use.
            "loadavg_1_5_15_start": [round(x, 2) for x in load_before],
            "loadavg_1_5_15_end": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0],
            "wrk": _version([tools["wrk"], "--version"]),
            "nginx": _version([tools["nginx"], "-v"]),
            "request": NON_STREAM_BODY,
        },
        "scenarios": results,
        "ratios": ratio_table,
        "targets": report.check_targets(ratio_table),
        "fullpath": fullpath,
        "fullpath_noaudit": fullpath_noaudit,
    }
    Path(args.out).write_text(json.dumps(document, indent=2) + "\n")
    print(report.table(results))
    print(fullpath_table(fullpath))
    print(fullpath_table(fullpath_noaudit))
    print(f"\nresults: {args.out} ({elapsed} s; load average at start {load_before[0]:.2f})")
    if args.keep_workdir:
        print(f"workdir: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
