"""Ratios, targets and the printed table, computed from one run's scenario results (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Result = dict[str, Any]


def _get(result: Result, *path: str) -> float | None:
    value: Any = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def metrics(result: Result) -> dict[str, float | None]:
    """The headline numbers of one scenario result (None when not measured)."""
    return {
        "rps_c32": _get(result, "c32", "rps"),
        "rps_c128": _get(result, "c128", "rps"),
        "p50_c32": _get(result, "c32", "latency_ms", "p50"),
        "p99_c32": _get(result, "c32", "latency_ms", "p99"),
        "p50_c128": _get(result, "c128", "latency_ms", "p50"),
        "p99_c128": _get(result, "c128", "latency_ms", "p99"),
        "p50_1conn": _get(result, "one_conn", "p50"),
        "p99_1conn": _get(result, "one_conn", "p99"),
        "first_chunk_p50": _get(result, "stream", "first_chunk", "p50"),
        "done_p50": _get(result, "stream", "done", "p50"),
        "rss_mb": (_get(result, "memory", "rss_kb") or 0) / 1024 or None,
        "hwm_mb": (_get(result, "memory", "hwm_kb") or 0) / 1024 or None,
        "cpu_ms_per_req": _get(result, "cpu_ms_per_req"),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _added(a: float | None, b: float | None) -> float | None:
    return round(a - b, 3) if a is not None and b is not None else None


def ratios(results: dict[str, Result]) -> dict[str, dict[str, float | None]]:
    """Per scenario: req/s ratios and added latencies against ``direct`` and ``nginx`` of the same run."""
    base = {name: metrics(results[name]) for name in ("direct", "nginx") if results.get(name, {}).get("available")}
    out: dict[str, dict[str, float | None]] = {}
    for name, result in results.items():
        if not result.get("available"):
            continue
        m = metrics(result)
        entry: dict[str, float | None] = {}
        for ref_name, ref in base.items():
            if ref_name == name:
                continue
            entry[f"rps_c32_vs_{ref_name}"] = _ratio(m["rps_c32"], ref["rps_c32"])
            entry[f"rps_c128_vs_{ref_name}"] = _ratio(m["rps_c128"], ref["rps_c128"])
            entry[f"added_p50_1conn_ms_vs_{ref_name}"] = _added(m["p50_1conn"], ref["p50_1conn"])
            entry[f"added_first_chunk_p50_ms_vs_{ref_name}"] = _added(m["first_chunk_p50"], ref["first_chunk_p50"])
            entry[f"added_done_p50_ms_vs_{ref_name}"] = _added(m["done_p50"], ref["done_p50"])
        if entry:
            out[name] = entry
    return out


@dataclass(frozen=True)
class TargetRule:
    """A target of an issue: ``ratio_key`` of ``scenario`` compared with ``limit``."""

    scenario: str
    key: str
    op: str  # "<=" or ">="
    limit: float
    text: str


#: Issue 4's pass-through targets (issue 8 adds the full path's).
TARGETS: tuple[TargetRule, ...] = (
    TargetRule("gateway", "added_p50_1conn_ms_vs_direct", "<=", 0.5, "added p50 at one connection <= 0.5 ms"),
    TargetRule("gateway", "added_first_chunk_p50_ms_vs_direct", "<=", 1.0, "stream first chunk added <= 1 ms"),
    TargetRule("gateway", "rps_c32_vs_nginx", ">=", 0.4, "req/s at 32 conns >= 0.4x nginx"),
    TargetRule("gateway", "rps_c128_vs_nginx", ">=", 0.4, "req/s at 128 conns >= 0.4x nginx"),
)


def check_targets(ratio_table: dict[str, dict[str, float | None]]) -> list[dict[str, Any]]:
    """Each target with the measured value and pass/fail (skipped when its scenario did not run)."""
    out = []
    for rule in TARGETS:
        value = ratio_table.get(rule.scenario, {}).get(rule.key)
        if value is None:
            status = "not measured"
        elif (value <= rule.limit) if rule.op == "<=" else (value >= rule.limit):
            status = "pass"
        else:
            status = "FAIL"
        out.append({"scenario": rule.scenario, "target": rule.text, "key": rule.key, "value": value, "status": status})
    return out


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("rps_c32", "req/s@32", 0),
    ("p50_c32", "p50@32", 2),
    ("p99_c32", "p99@32", 2),
    ("rps_c128", "req/s@128", 0),
    ("p50_c128", "p50@128", 2),
    ("p99_c128", "p99@128", 2),
    ("p50_1conn", "p50@1", 3),
    ("p99_1conn", "p99@1", 3),
    ("first_chunk_p50", "1st chunk", 3),
    ("done_p50", "[DONE]", 3),
    ("rss_mb", "RSS MB", 1),
    ("cpu_ms_per_req", "CPU ms/req", 3),
)


def table(results: dict[str, Result]) -> str:
    """The human summary: one row per scenario (latencies in ms), then ratios and targets."""
    name_w = max([8, *(len(n) for n in results)])
    widths = [max(len(title), 9) for _, title, _ in COLUMNS]
    lines = [
        "  ".join([f"{'scenario':<{name_w}}", *(f"{t:>{w}}" for (_, t, _), w in zip(COLUMNS, widths, strict=True))])
    ]
    for name, result in results.items():
        if not result.get("available"):
            lines.append(f"{name:<{name_w}}  not available: {result.get('reason', '?')}")
            continue
        m = metrics(result)
        cells = [f"{_fmt(m[key], d):>{w}}" for (key, _, d), w in zip(COLUMNS, widths, strict=True)]
        lines.append("  ".join([f"{name:<{name_w}}", *cells]))
        errors = sum(
            int((result.get(c) or {}).get("errors", {}).get(k, 0))
            for c in ("c32", "c128")
            for k in ("connect", "read", "write", "status", "timeout")
        )
        if errors:
            lines.append(f"{'':<{name_w}}  !! {errors} wrk errors (non-2xx or socket errors): figures are not valid")
    lines.append("(latencies in ms; 1st chunk / [DONE]: p50 over sequential streams; RSS of the system under test)")
    rt = ratios(results)
    if rt:
        lines.append("")
        lines.append("ratios (same run):")
        for name, entry in rt.items():
            shown = ", ".join(f"{k}={_fmt(v, 3)}" for k, v in entry.items())
            lines.append(f"  {name}: {shown}")
    checks = [c for c in check_targets(rt) if c["status"] != "not measured" or c["scenario"] in results]
    if checks:
        lines.append("")
        lines.append("targets (issue 4, pass-through):")
        for c in checks:
            lines.append(f"  [{c['status']}] {c['scenario']}: {c['target']} (measured {_fmt(c['value'], 3)})")
    return "\n".join(lines)
