"""Issue 8's side-by-side figures from one run (pure): ours vs the peers, targets, and the text of the
soak, key-lookup and Channel-apply sections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import report

Result = dict[str, Any]

#: Our scenarios, best evidence first: the full path when it ran, else the pass-through.
OURS = ("fullpath", "gateway")
PEERS = ("litellm", "portkey")


@dataclass(frozen=True)
class PeerTarget:
    key: str
    op: str  # ">=" or "<="
    limit: float
    text: str


#: Issue 8's acceptance targets (``key`` names an entry of :func:`headline`).
TARGETS: tuple[PeerTarget, ...] = (
    PeerTarget("rps_c32_vs_litellm", ">=", 20.0, "ours >= 20x LiteLLM req/s at 32 conns"),
    PeerTarget("rps_c128_vs_litellm", ">=", 20.0, "ours >= 20x LiteLLM req/s at 128 conns"),
    PeerTarget("rps_c32_vs_portkey", ">=", 3.0, "ours >= 3x Portkey req/s at 32 conns"),
    PeerTarget("rps_c128_vs_portkey", ">=", 3.0, "ours >= 3x Portkey req/s at 128 conns"),
    PeerTarget("added_p50_1conn_ms_vs_direct", "<=", 0.8, "ours adds <= 0.8 ms p50 at one connection over direct"),
)


def ours(results: dict[str, Result]) -> str | None:
    """Which of our scenarios stands for "ours" in the ratios (None: neither ran)."""
    return next((name for name in OURS if results.get(name, {}).get("available")), None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _diff(a: float | None, b: float | None) -> float | None:
    return round(a - b, 3) if a is not None and b is not None else None


def versus(mine: Result, peer: Result) -> dict[str, float | None]:
    """Ours against one peer: req/s ratios (>1: ours faster), the peer's latency and memory as multiples of ours."""
    m, p = report.metrics(mine), report.metrics(peer)
    return {
        "rps_c32": _ratio(m["rps_c32"], p["rps_c32"]),
        "rps_c128": _ratio(m["rps_c128"], p["rps_c128"]),
        "peer_p50_1conn_x": _ratio(p["p50_1conn"], m["p50_1conn"]),
        "peer_p99_c128_x": _ratio(p["p99_c128"], m["p99_c128"]),
        "peer_first_chunk_x": _ratio(p["first_chunk_p50"], m["first_chunk_p50"]),
        "peer_done_x": _ratio(p["done_p50"], m["done_p50"]),
        "peer_rss_x": _ratio(p["rss_mb"], m["rss_mb"]),
        "peer_cpu_per_req_x": _ratio(p["cpu_ms_per_req"], m["cpu_ms_per_req"]),
    }


def headline(results: dict[str, Result]) -> dict[str, Any]:
    """The ratios the targets read, for ``ours(results)``; every scenario pair for the table."""
    name = ours(results)
    out: dict[str, Any] = {"ours": name, "pairs": {}}
    if name is None:
        return out
    mine = results[name]
    for our_name in OURS:
        for peer in PEERS:
            if results.get(our_name, {}).get("available") and results.get(peer, {}).get("available"):
                out["pairs"][f"{our_name}_vs_{peer}"] = versus(results[our_name], results[peer])
    for peer in PEERS:
        pair = out["pairs"].get(f"{name}_vs_{peer}", {})
        out[f"rps_c32_vs_{peer}"] = pair.get("rps_c32")
        out[f"rps_c128_vs_{peer}"] = pair.get("rps_c128")
    direct = results.get("direct", {})
    if direct.get("available"):
        out["added_p50_1conn_ms_vs_direct"] = _diff(report.metrics(mine)["p50_1conn"],
                                                   report.metrics(direct)["p50_1conn"])
    return out


def check(head: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured value and pass / FAIL / not measured."""
    out = []
    for t in TARGETS:
        value = head.get(t.key)
        if value is None:
            status = "not measured"
        else:
            status = "pass" if (value >= t.limit if t.op == ">=" else value <= t.limit) else "FAIL"
        out.append({"target": t.text, "key": t.key, "ours": head.get("ours"), "value": value, "status": status})
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def peers_text(head: dict[str, Any], checks: list[dict[str, Any]]) -> str:
    lines = ["", f"ours vs peers (same run; ours = {head.get('ours')}):"]
    for pair, values in head.get("pairs", {}).items():
        lines.append(f"  {pair}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in values.items()))
    lines.append("  (rps_*: our req/s / the peer's; peer_*_x: the peer's latency, RSS, CPU per request as multiples "
                 "of ours)")
    lines.append("")
    lines.append("targets (issue 8):")
    for c in checks:
        lines.append(f"  [{c['status']}] {c['target']} (measured {_fmt(c['value'])})")
    return "\n".join(lines)


def soak_text(soak: dict[str, Any]) -> str:
    if "error" in soak:
        return f"\nsoak: not run: {soak['error']}"
    trend = soak.get("trend") or {}
    lines = ["", f"soak ({soak.get('scenario')}): {soak['requests']:,} requests in {soak['elapsed_s']} s "
             f"({_fmt(soak['rps'])} req/s, {soak['connections']} conns), errors {sum(soak['errors'].values())}, "
             f"{trend.get('samples', 0)} RSS samples every {soak['interval_s']} s"]
    if trend:
        lines.append(
            f"  RSS MiB: start {trend['rss_mib_start']}, end {trend['rss_mib_end']}, min {trend['rss_mib_min']}, "
            f"max {trend['rss_mib_max']}; median first half {trend['rss_mib_median_first_half']}, "
            f"last half {trend['rss_mib_median_last_half']}")
        lines.append(
            f"  slope MiB/min: first half {trend['slope_first_half_mib_per_min']}, last half "
            f"{trend['slope_last_half_mib_per_min']}; growth over the last half {trend['growth_last_half_mib']} MiB "
            f"(allowed {trend['allowed_last_half_growth_mib']})")
        lines.append(f"  [{'pass' if trend['levels_off'] else 'FAIL'}] RSS levels off"
                     + ("" if soak.get("complete") else f" [FAIL] fewer than {soak['target_requests']:,} requests"))
    return "\n".join(lines)


def keylookup_text(kl: dict[str, Any]) -> str:
    if "error" in kl:
        return f"\nkey lookup: not run: {kl['error']}"
    pairs, mem, load = kl["pairs"], kl["memory"], kl["random_keys_c32"]
    lines = ["", f"{kl['keys']:,} keys ({kl['backend']}): created in {kl['create']['seconds']} s "
             f"({_fmt(kl['create']['keys_per_s'])} keys/s via the admin API)"]
    if "cold" in pairs:
        lines.append(f"  one connection, {pairs['n']} random keys: cold p50 {pairs['cold']['p50']:.3f} / p99 "
                     f"{pairs['cold']['p99']:.3f} ms, warm p50 {pairs['warm']['p50']:.3f} / p99 "
                     f"{pairs['warm']['p99']:.3f} ms (cold - warm p50 {pairs['cold_minus_warm_p50_ms']} ms), "
                     f"errors {pairs['errors']}")
    lines.append(f"  32 conns, random key per request: {_fmt(load['rps'])} req/s, p50 {load['latency_ms'].get('p50')}"
                 f" ms, p99 {load['latency_ms'].get('p99')} ms, errors {sum(load['errors'].values())}")
    lines.append(f"  RSS MiB: empty {mem['rss_mib_empty']}, keys created {mem['rss_mib_keys_created']}, after lookups "
                 f"{mem['rss_mib_after_lookups']} ({mem['bytes_per_key_after_lookups']} bytes/key)")
    return "\n".join(lines)


def routable_text(rt: dict[str, Any]) -> str:
    if "error" in rt:
        return f"\nChannel apply -> routable: not run: {rt['error']}"
    return (f"\nChannel apply -> routable ({rt['runs']} runs): p50 {rt['p50_ms']} ms, p95 {rt['p95_ms']} ms, "
            f"max {rt['max_ms']} ms (a peer polling every {rt['peer_poll_s']:.0f} s: {rt['peer_mean_ms']:.0f} ms "
            f"on average, up to {rt['peer_poll_s'] * 1000:.0f} ms)")


def noise_text(results: dict[str, Result], soak: dict[str, Any] | None = None, warn_pct: float = 5.0) -> str:
    """CPU time on the SUT core that the SUT did not use, per scenario; flags noisy measurements."""
    rows = [(name, r["sut_core"]) for name, r in results.items() if r.get("available") and r.get("sut_core")]
    if soak and soak.get("sut_core"):
        rows.append((f"soak ({soak.get('scenario')})", soak["sut_core"]))
    if not rows:
        return ""
    noisy = [name for name, core in rows if core["foreign_pct"] > warn_pct]
    cells = ", ".join(f"{name} {core['foreign_pct']}%" for name, core in rows)
    line = f"\nforeign CPU on the SUT core (other work on the machine): {cells}"
    if noisy:
        line += (f"\n  !! more than {warn_pct:g}% foreign CPU during: {', '.join(noisy)}: those figures are low; "
                 "run again on a quiet machine")
    return line
