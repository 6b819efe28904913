#!/usr/bin/env python3
"""Side-by-side benchmark (issue 8): our gateway against LiteLLM and Portkey, in one run.

    .venv/bin/python hack/bench/compare.py [--quick] [--out hack/bench/results/compare.json]

One run, the layout of hack/bench/run.py (system under test alone on CPU 0, load generator and
demo upstream on CPU 1), then:

1. scenarios: direct, nginx, our gateway pass-through, our gateway full path (PostgreSQL +
   Redis), LiteLLM proxy, Portkey: req/s and p50/p99 at 32 and 128 connections, p50/p99 at one
   connection, stream first chunk and [DONE], RSS (run.py's ``measure``);
2. soak: at least 200,000 requests through our full path with its RSS sampled every 2 s;
3. key lookup: 10,000 keys through the admin API, cold/warm lookup latency, RSS;
4. Channel apply -> routable p50/p95 (operator_bench.py's measurement).

Prints a table and writes JSON. See hack/bench/README.md ("Side by side").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as gateway_bench
from gatewaybench import comparison, keylookup, noise, peers, procs, report, routable, scenarios, soak

from newapi_gateway.demo_upstream import DemoUpstreamProcess

Plan = gateway_bench.Plan
DEFAULT_SCENARIOS = ("direct", "nginx", "gateway", "fullpath", "litellm", "portkey")
PARTS = ("scenarios", "soak", "keys", "routable")

#: The peers answer 10-100x slower: fewer sequential requests keep their share of the run short
#: (wrk still runs the same seconds as everyone else).
PEER_PLANS: dict[str, Plan] = {
    "litellm": Plan(warmup_s=2, wrk_s=10, one_conn=300, one_conn_warmup=30, streams=100, stream_warmup=10),
    "portkey": Plan(warmup_s=2, wrk_s=10, one_conn=1000, one_conn_warmup=100, streams=300, stream_warmup=30),
}
QUICK_PEER_PLANS: dict[str, Plan] = {
    "litellm": Plan(warmup_s=1, wrk_s=3, one_conn=100, one_conn_warmup=10, streams=40, stream_warmup=5),
    "portkey": Plan(warmup_s=1, wrk_s=3, one_conn=300, one_conn_warmup=30, streams=100, stream_warmup=10),
}


def plan_for(name: str, quick: bool) -> Plan:
    if quick:
        return QUICK_PEER_PLANS.get(name, gateway_bench.QUICK)
    return PEER_PLANS.get(name, gateway_bench.FULL)


def all_scenarios(install: bool, load_cpu: int) -> dict[str, scenarios.Scenario]:
    found: dict[str, scenarios.Scenario] = dict(
        gateway_bench.make_scenarios(scenarios.DEFAULT_GATEWAY_COMMAND, load_cpu=load_cpu))
    found["litellm"] = peers.LiteLLM(install=install)  # honour --no-install
    found["portkey"] = peers.Portkey(install=install)
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Side-by-side gateway benchmark (see hack/bench/README.md).")
    p.add_argument("--quick", action="store_true", help="smoke run: short wrk runs, 20,000-request soak, 1,000 keys")
    p.add_argument("--out", default="hack/bench/results/compare.json", help="JSON results file")
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                   help=f"comma-separated (default {','.join(DEFAULT_SCENARIOS)})")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated parts to run (default {','.join(PARTS)})")
    p.add_argument("--soak-requests", type=int, help="requests of the soak (default 200,000; quick 20,000)")
    p.add_argument("--soak-scenario", default="fullpath",
                   help="scenario the soak runs through (default fullpath; gateway when fullpath is unavailable)")
    p.add_argument("--keys", type=int, help="keys of the key-lookup part (default 10,000; quick 1,000)")
    p.add_argument("--key-pairs", type=int, help="cold/warm pairs measured (default 2,000; quick 300)")
    p.add_argument("--routable-runs", type=int, help="Channel applies timed (default 50; quick 10)")
    p.add_argument("--sut-cpu", default="0", help="CPU(s) of the system under test (default 0)")
    p.add_argument("--load-cpu", type=int, default=1, help="CPU of the load generator and upstream (default 1)")
    p.add_argument("--no-install", action="store_true",
                   help="install nothing (wrk/nginx, the LiteLLM venv, the Portkey npm project)")
    p.add_argument("--keep-workdir", action="store_true", help="keep the temporary directory (configs, logs)")
    return p.parse_args(argv)


def _timed(timings: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    start = time.monotonic()
    try:
        return fn()
    finally:
        timings[name] = round(time.monotonic() - start, 1)


def run_scenarios(names: list[str], table: dict[str, scenarios.Scenario], ctx: scenarios.Context, quick: bool,
                  workdir: Path, timings: dict[str, float]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    sut_core = int(ctx.sut_cpus.split(",")[0].split("-")[0])
    for name in names:
        scenario = table[name]
        print(f"==> {name}: {scenario.description}", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            target = scenario.start(ctx)
        except scenarios.Unavailable as exc:
            results[name] = {"available": False, "reason": str(exc)}
            print(f"    not available: {exc}", file=sys.stderr)
            timings[name] = round(time.monotonic() - started, 1)
            continue
        try:
            plan = plan_for(name, quick)
            watch = noise.CoreWatch(sut_core, None if name == "direct" else target.pid)
            watch.start()
            measured = gateway_bench.measure(target, plan, workdir)
            results[name] = {"description": scenario.description, "plan": plan.__dict__, **measured,
                             "sut_core": watch.stop()}
        except Exception as exc:  # a broken system under test is reported, the others still run
            results[name] = {"available": False, "reason": f"failed during measurement: {exc}"}
            print(f"    failed: {exc}", file=sys.stderr)
        finally:
            target.close()
            timings[name] = round(time.monotonic() - started, 1)
    return results


def run_soak(name: str, table: dict[str, scenarios.Scenario], ctx: scenarios.Context, requests: int,
             workdir: Path) -> dict[str, Any]:
    chosen = [n for n in (name, "gateway") if n in table]
    errors = []
    for candidate in dict.fromkeys(chosen):
        print(f"==> soak: {requests:,} requests through {candidate}", file=sys.stderr, flush=True)
        try:  # a fresh instance in its own directory (the scenarios part used ctx.workdir/<name>)
            target = table[candidate].start(dataclasses.replace(ctx, workdir=workdir / candidate))
        except scenarios.Unavailable as exc:
            errors.append(f"{candidate}: {exc}")
            print(f"    not available: {exc}", file=sys.stderr)
            continue
        watch = noise.CoreWatch(int(ctx.sut_cpus.split(",")[0].split("-")[0]), target.pid)
        try:
            watch.start()
            result = soak.run_soak(target, gateway_bench.NON_STREAM_BODY, workdir / candidate,
                                   total_requests=requests)
            result["sut_core"] = watch.stop()
        except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
            return {"scenario": candidate, "error": f"failed during the soak: {exc}"}
        finally:
            target.close()
        return {"scenario": candidate, **result}
    return {"error": "; ".join(errors) or "no scenario to soak"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    available = os.sched_getaffinity(0)
    sut_cpus = {int(c) for c in args.sut_cpu.split(",")}
    if args.load_cpu not in available or not sut_cpus <= available or args.load_cpu in sut_cpus:
        print(f"compare: needs distinct CPUs for the system under test ({args.sut_cpu}) and the load "
              f"({args.load_cpu}); this process may use {sorted(available)}. Pass --sut-cpu/--load-cpu.",
              file=sys.stderr)
        return 2
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    table = all_scenarios(install=not args.no_install, load_cpu=args.load_cpu)
    unknown = [p for p in parts if p not in PARTS] + [s for s in names if s not in table]
    if unknown:
        print(f"compare: unknown part(s)/scenario(s) {unknown}; parts: {', '.join(PARTS)}; "
              f"scenarios: {', '.join(table)}", file=sys.stderr)
        return 2
    try:
        tools = procs.ensure_tools(install=not args.no_install)
    except procs.BenchSetupError as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 2
    started = time.time()
    timings: dict[str, float] = {}
    # The peers' environments are installed before the clock of the measurements starts (first run only).
    setup: dict[str, str] = {}
    installers: dict[str, Callable[[], object]] = {
        "litellm": lambda: peers.ensure_litellm(install=not args.no_install),
        "portkey": lambda: peers.ensure_portkey(install=not args.no_install),
    }
    for name, ensure in installers.items():
        if name in names and "scenarios" in parts:
            try:
                _timed(timings, f"setup_{name}", ensure)
                setup[name] = "ready"
            except scenarios.Unavailable as exc:
                setup[name] = str(exc)
    os.sched_setaffinity(0, {args.load_cpu})  # this process, wrk, the upstream, the state servers: the load side
    workdir = Path(tempfile.mkdtemp(prefix="newapi-compare-"))
    measuring = time.monotonic()
    load_before = os.getloadavg()
    upstream = DemoUpstreamProcess.spawn(name="bench", record=0, cpus=str(args.load_cpu))
    ctx = scenarios.Context(upstream_url=upstream.url, upstream_pid=upstream.pid, workdir=workdir,
                            sut_cpus=args.sut_cpu, tools=tools, load_cpu=args.load_cpu)
    results: dict[str, dict[str, Any]] = {}
    soak_result: dict[str, Any] | None = None
    keys_result: dict[str, Any] | None = None
    routable_result: dict[str, Any] | None = None
    try:
        if "scenarios" in parts:
            results = run_scenarios(names, table, ctx, args.quick, workdir, timings)
        if "soak" in parts:
            count = args.soak_requests or (20_000 if args.quick else 200_000)
            soak_result = _timed(timings, "soak", lambda: run_soak(args.soak_scenario, table, ctx, count,
                                                                   workdir / "soak"))
        if "keys" in parts:
            print("==> key lookup", file=sys.stderr, flush=True)

            def keys() -> dict[str, Any]:
                try:
                    return keylookup.run_keylookup(
                        workdir / "keylookup", upstream.url, args.sut_cpu, args.load_cpu,
                        gateway_bench.NON_STREAM_BODY, count=args.keys or (1_000 if args.quick else 10_000),
                        pairs=args.key_pairs or (300 if args.quick else 2_000), wrk_s=3 if args.quick else 10)
                except (scenarios.Unavailable, RuntimeError) as exc:
                    return {"error": str(exc)}
            keys_result = _timed(timings, "keys", keys)
    finally:
        upstream.stop()
    if "routable" in parts:
        print("==> Channel apply -> routable", file=sys.stderr, flush=True)

        def channel() -> dict[str, Any]:
            try:
                return routable.run_routable(args.routable_runs or (10 if args.quick else 50))
            except RuntimeError as exc:
                return {"error": str(exc)}
        routable_result = _timed(timings, "routable", channel)
    measured_s = round(time.monotonic() - measuring, 1)
    elapsed = round(time.time() - started, 1)
    head = comparison.headline(results)
    checks = comparison.check(head)
    ratio_table = report.ratios(results)
    document: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "elapsed_s": elapsed,
            "measured_s": measured_s,
            "timings_s": timings,
            "quick": args.quick,
            "layout": f"system under test on CPU {args.sut_cpu}; wrk, sequential clients, demo upstream, "
                      f"PostgreSQL and Redis on CPU {args.load_cpu}",
            "cpu": _cpu_model(),
            "cpus_online": os.cpu_count(),
            "loadavg_1_5_15_start": [round(x, 2) for x in load_before],
            "loadavg_1_5_15_end": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0],
            "peers": {"litellm": peers.LITELLM_VERSION, "portkey": _portkey_version(), "setup": setup,
                      "node": _version(["node", "--version"])},
            "request": gateway_bench.NON_STREAM_BODY,
        },
        "scenarios": results,
        "ratios": ratio_table,
        "targets_issue4": report.check_targets(ratio_table),
        "fullpath": gateway_bench.fullpath_summary(results),
        "peers": head,
        "targets": checks,
        "soak": soak_result,
        "keylookup": keys_result,
        "routable": routable_result,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    if results:
        print(report.table(results))
        print(comparison.peers_text(head, checks))
    print(comparison.noise_text(results, soak_result))
    if soak_result is not None:
        print(comparison.soak_text(soak_result))
    if keys_result is not None:
        print(comparison.keylookup_text(keys_result))
    if routable_result is not None:
        print(comparison.routable_text(routable_result))
    print(f"\nresults: {out}; {elapsed} s in all ({measured_s} s measuring; "
          + ", ".join(f"{k} {v} s" for k, v in timings.items())
          + f"); load average at start {load_before[0]:.2f}")
    if args.keep_workdir:
        print(f"workdir: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _portkey_version() -> str:
    server = peers.VENVS_DIR / "portkey" / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    return peers.portkey_version(server) if server.exists() else "not installed"


def _version(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


if __name__ == "__main__":
    sys.exit(main())
