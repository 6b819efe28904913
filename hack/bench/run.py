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
    #: run.py measures the scenarios' req/s in this many interleaved rounds of ``wrk_s / rounds``
    #: seconds each (every scenario once per round, in turn; every other round in reverse order)
    #: and reports the median round, so a slow minute of the VM weighs on every scenario alike
    #: instead of on the one measured then
    rounds: int = 1


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


FULL = Plan(warmup_s=2, wrk_s=22, one_conn=3000, one_conn_warmup=300, streams=1000, stream_warmup=100, rounds=11)
QUICK = Plan(warmup_s=1, wrk_s=3, one_conn=500, one_conn_warmup=100, streams=200, stream_warmup=20)


def make_scenarios(
    gateway_cmd: str, fullpath_cmd: str = scenarios.DEFAULT_FULLPATH_COMMAND, load_cpu: int = 1
) -> dict[str, scenarios.Scenario]:
    return {
        "direct": scenarios.Direct(),
        "nginx": scenarios.Nginx(),
        "gateway": scenarios.Gateway(command=gateway_cmd),
        "fullpath": scenarios.FullPath(command=fullpath_cmd, load_cpu=load_cpu),
        "fullpath-metering": scenarios.FullPath(command=fullpath_cmd, load_cpu=load_cpu, compliance=False),
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
    paired: dict[str, list[float]] = {}
    for ref in ("gateway", "direct"):
        if results.get(ref, {}).get("available"):
            r = report.metrics(results[ref])
            for key in ("rps_c32", "rps_c128"):
                ratios[f"{key}_vs_{ref}"] = round(m[key] / r[key], 3) if m[key] and r[key] else None
                # interleaved rounds: the ratio within each round (measured minutes apart at most,
                # so the VM's drift cancels), and their median is the figure
                mine = full.get(key[4:], {}).get("rounds_rps")
                theirs = results[ref].get(key[4:], {}).get("rounds_rps")
                if mine and theirs and len(mine) == len(theirs) and all(theirs):
                    per_round = [round(a / b, 3) for a, b in zip(mine, theirs, strict=True)]
                    paired[f"{key}_vs_{ref}"] = per_round
                    ratios[f"{key}_vs_{ref}_of_medians"] = ratios[f"{key}_vs_{ref}"]
                    ratios[f"{key}_vs_{ref}"] = round(_median(per_round), 3)
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
    return {"scenario": name, "ratios": ratios, "paired_rounds": paired, "targets": targets,
            "state_per_request": full.get("state_per_request", {})}


def fullpath_table(summary: dict[str, Any]) -> str:
    if not summary:
        return ""
    lines = ["", f"full path (issue 5), scenario {summary.get('scenario', 'fullpath')}:"]
    lines.append("  " + ", ".join(f"{k}={v}" for k, v in summary["ratios"].items()))
    for key, per_round in summary.get("paired_rounds", {}).items():
        lines.append(f"  {key} per round: {per_round} (median above)")
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


@dataclass
class Throughput:
    """The wrk rounds of one scenario at one connection count, and what they cost."""

    runs: list[wrk.WrkResult]
    cpu_s: list[float]
    counters: dict[str, float]

    def median_run(self) -> wrk.WrkResult:
        return sorted(self.runs, key=lambda r: r.rps)[(len(self.runs) - 1) // 2]

    def to_json(self) -> dict[str, Any]:
        """The median round (by req/s) as the figure, every round's req/s beside it."""
        out = self.median_run().to_json()
        if len(self.runs) > 1:
            out["rounds_rps"] = [round(r.rps, 1) for r in self.runs]
        out["cpu_ms_per_req"] = self.cpu_ms_per_req()
        out["busy"] = self.busy()
        return out

    def busy(self) -> float | None:
        """The median round's share of the wall time the system under test spent on a CPU (1.0 = one
        core fully used): well under 1 means it waited (on its clients, upstream or state servers)."""
        per = sorted(c / r.duration_s for r, c in zip(self.runs, self.cpu_s, strict=True) if r.duration_s)
        return round(per[(len(per) - 1) // 2], 3) if per else None

    def cpu_ms_per_req(self) -> float | None:
        per = sorted(c * 1000 / r.requests for r, c in zip(self.runs, self.cpu_s, strict=True) if r.requests)
        return round(per[(len(per) - 1) // 2], 4) if per else None

    def per_request(self) -> dict[str, float]:
        requests = sum(r.requests for r in self.runs)
        return {k: round(v / requests, 4) for k, v in self.counters.items()} if requests else {}


class Measured:
    """A started scenario being measured: its wrk script, process tree and throughput rounds."""

    def __init__(self, target: scenarios.Target, workdir: Path, name: str) -> None:
        _smoke(target)
        self.target = target
        self.script = workdir / f"post-{name}.lua"
        self.script.write_text(wrk.lua_script("POST", json.dumps(NON_STREAM_BODY), _headers(target)))
        self.tree = procs.process_tree(target.pid)
        self.rounds: dict[int, Throughput] = {}

    def warm_up(self, seconds: float) -> None:
        _wrk(self.target, self.script, 32, seconds)

    def round(self, connections: int, seconds: float) -> None:
        """One wrk run at ``connections``, with the gateway's CPU time and the state counters."""
        if self.target.before_run is not None:
            self.target.before_run()
        counters_before = self.target.counters() if self.target.counters else None
        cpu_before = procs.cpu_seconds(self.tree)
        run = _wrk(self.target, self.script, connections, seconds)
        cpu = procs.cpu_seconds(self.tree) - cpu_before
        entry = self.rounds.setdefault(connections, Throughput([], [], {}))
        entry.runs.append(run)
        entry.cpu_s.append(cpu)
        if counters_before is not None and self.target.counters is not None:
            for k, v in self.target.counters().items():
                entry.counters[k] = entry.counters.get(k, 0.0) + v - counters_before.get(k, 0.0)

    def throughput_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {"available": True, "note": self.target.note}
        for conns in (32, 128):
            if conns in self.rounds:
                result[f"c{conns}"] = self.rounds[conns].to_json()
        state = {f"c{c}": t.per_request() for c, t in self.rounds.items() if t.counters}
        if state:
            result["state_per_request"] = state
        result["cpu_ms_per_req"] = self.rounds[128].cpu_ms_per_req() if 128 in self.rounds else None
        return result


def measure(target: scenarios.Target, plan: Plan, workdir: Path) -> dict[str, Any]:
    """All measurements of one scenario, on its own (``compare.py``; ``run.py`` interleaves the
    scenarios' req/s rounds with :func:`measure_interleaved`)."""
    m = Measured(target, workdir, "scenario")
    m.warm_up(plan.warmup_s)
    for _ in range(plan.rounds):
        m.round(32, plan.wrk_s / plan.rounds)
    for _ in range(plan.rounds):
        m.round(128, plan.wrk_s / plan.rounds)
    return {**m.throughput_json(), **measure_latency(target, plan)}


def round_order(names: list[str], number: int) -> list[str]:
    """The scenarios' order in round ``number`` (from 0): as given, reversed in every other round
    (counterbalanced: within a pair of rounds each scenario is measured as often early as late)."""
    return list(names) if number % 2 == 0 else list(reversed(names))


def measure_interleaved(targets: dict[str, scenarios.Target], plan: Plan, workdir: Path,
                        descriptions: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every scenario's req/s in ``plan.rounds`` interleaved rounds (scenario after scenario, at 32
    then 128 connections, round after round; every other round in reverse order, so that a drift of
    the machine's speed within a round does not favour the scenario measured first), then each
    one's latency, stream and memory figures. A scenario that fails is reported and left out of the
    later rounds; the others go on."""
    results: dict[str, dict[str, Any]] = {}
    live: dict[str, Measured] = {}

    def failed(name: str, exc: Exception) -> None:
        results[name] = {"available": False, "reason": f"failed during measurement: {exc}"}
        live.pop(name, None)
        print(f"    {name} failed: {exc}", file=sys.stderr)

    for name, target in targets.items():
        try:
            live[name] = Measured(target, workdir, name)
            live[name].warm_up(plan.warmup_s)
        except Exception as exc:  # a broken system under test is reported, the others still run
            failed(name, exc)
    seconds = plan.wrk_s / plan.rounds
    for number in range(plan.rounds):
        print(f"==> req/s round {number + 1}/{plan.rounds}: {', '.join(live)}", file=sys.stderr, flush=True)
        order = round_order(list(live), number)
        for conns in (32, 128):
            for name in order:
                m = live.get(name)
                if m is None:  # failed earlier in this round
                    continue
                try:
                    m.round(conns, seconds)
                except Exception as exc:
                    failed(name, exc)
    for name, m in live.items():
        print(f"==> {name}: latency, streams, memory", file=sys.stderr, flush=True)
        try:
            results[name] = {"description": descriptions[name], **m.throughput_json(),
                             **measure_latency(m.target, plan)}
        except Exception as exc:
            failed(name, exc)
    return results


def measure_latency(target: scenarios.Target, plan: Plan) -> dict[str, Any]:
    """Sequential requests on one connection, sequential streams, and the memory afterwards."""
    result: dict[str, Any] = {}
    if target.before_run is not None:
        target.before_run()
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


def _version(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else "?"


def metering_build() -> str:
    """``compiled`` (mypyc, setup.py) or ``interpreted`` (an editable install, or
    ``NEWAPI_PURE_PYTHON=1``): how the full path's metering modules run in this environment, whose
    ``newapi`` the scenarios start."""
    from newapi_gateway.metering import meter

    return "interpreted" if (meter.__file__ or "").endswith(".py") else "compiled"


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
    p.add_argument("--scenarios", default="direct,nginx,gateway,fullpath,fullpath-metering",
                   help="comma-separated (direct, nginx, gateway, fullpath, fullpath-metering; also litellm, "
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
    targets: dict[str, scenarios.Target] = {}
    try:
        ctx = scenarios.Context(
            upstream_url=upstream.url, upstream_pid=upstream.pid, workdir=workdir, sut_cpus=args.sut_cpu, tools=tools,
            load_cpu=args.load_cpu,
        )
        # every scenario up at once (idle ones cost nothing measurable), so their req/s rounds interleave
        for name in chosen:
            scenario = all_scenarios[name]
            print(f"==> {name}: {scenario.description}", file=sys.stderr, flush=True)
            try:
                targets[name] = scenario.start(ctx)
            except scenarios.Unavailable as exc:
                results[name] = {"available": False, "reason": str(exc)}
                print(f"    not available: {exc}", file=sys.stderr)
        measured = measure_interleaved(targets, plan, workdir,
                                       {name: all_scenarios[name].description for name in targets})
        results = {name: results.get(name) or measured[name] for name in chosen if name in results or name in measured}
    finally:
        for target in targets.values():
            target.close()
        upstream.stop()
    ratio_table = report.ratios(results)
    fullpath = fullpath_summary(results)
    fullpath_metering = fullpath_summary(results, "fullpath-metering")
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
            "metering_build": metering_build(),
            "wrk": _version([tools["wrk"], "--version"]),
            "nginx": _version([tools["nginx"], "-v"]),
            "request": NON_STREAM_BODY,
        },
        "scenarios": results,
        "ratios": ratio_table,
        "targets": report.check_targets(ratio_table),
        "fullpath": fullpath,
        "fullpath_metering": fullpath_metering,
    }
    Path(args.out).write_text(json.dumps(document, indent=2) + "\n")
    print(report.table(results))
    print(fullpath_table(fullpath))
    print(fullpath_table(fullpath_metering))
    print(f"\nmetering modules: {metering_build()} (see hack/bench/README.md, Requirements)")
    print(f"\nresults: {args.out} ({elapsed} s; load average at start {load_before[0]:.2f})")
    if args.keep_workdir:
        print(f"workdir: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
