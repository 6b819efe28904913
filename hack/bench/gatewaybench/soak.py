"""Soak: a long run of requests through one gateway with its RSS sampled; does memory level off?

wrk runs in back-to-back segments (``segment_s`` each, ``connections`` connections) until at least
``total_requests`` were answered, while a thread reads the process tree's ``VmRSS`` every
``interval_s`` seconds. :func:`rss_trend` (pure) compares the halves of the samples: a leak keeps
growing through the second half, a healthy process grows while it warms up and then stays flat.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procs, wrk
from .scenarios import CHAT_PATH, Target

#: The last half may grow by at most max(this, TOLERANCE_FRACTION x its starting RSS) to "level off".
TOLERANCE_KB = 2048
TOLERANCE_FRACTION = 0.02


@dataclass(frozen=True)
class RssSample:
    """RSS (kB) of the process tree ``t_s`` seconds after the soak started."""

    t_s: float
    rss_kb: int


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope dy/dx of ``points`` (0 when x does not vary)."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def rss_trend(samples: Sequence[RssSample], rps: float | None = None,
              tolerance_kb: int = TOLERANCE_KB, tolerance_fraction: float = TOLERANCE_FRACTION) -> dict[str, Any]:
    """Summary of the samples and the verdict (pure).

    Slopes are least-squares fits over each half (MiB per minute, and per 100k requests when
    ``rps`` is known). ``levels_off`` is true when the fitted growth over the last half stays
    within max(``tolerance_kb``, ``tolerance_fraction`` x the RSS at the start of the last half).
    """
    if len(samples) < 4:
        raise ValueError(f"a trend needs at least 4 RSS samples, got {len(samples)}: run the soak longer")
    ordered = sorted(samples, key=lambda s: s.t_s)
    half = len(ordered) // 2
    first, last = ordered[:half], ordered[half:]
    mib = 1024.0

    def fit(part: Sequence[RssSample]) -> tuple[float, float]:
        per_s = slope([(s.t_s, s.rss_kb / mib) for s in part])
        return per_s, per_s * (part[-1].t_s - part[0].t_s)

    first_slope, first_growth = fit(first)
    last_slope, last_growth = fit(last)
    allowed_mib = max(tolerance_kb, tolerance_fraction * last[0].rss_kb) / mib
    values = [s.rss_kb / mib for s in ordered]
    out: dict[str, Any] = {
        "samples": len(ordered),
        "duration_s": round(ordered[-1].t_s - ordered[0].t_s, 1),
        "rss_mib_start": round(values[0], 1),
        "rss_mib_end": round(values[-1], 1),
        "rss_mib_min": round(min(values), 1),
        "rss_mib_max": round(max(values), 1),
        "rss_mib_median_first_half": round(statistics.median(values[:half]), 1),
        "rss_mib_median_last_half": round(statistics.median(values[half:]), 1),
        "slope_first_half_mib_per_min": round(first_slope * 60, 3),
        "slope_last_half_mib_per_min": round(last_slope * 60, 3),
        "growth_first_half_mib": round(first_growth, 2),
        "growth_last_half_mib": round(last_growth, 2),
        "allowed_last_half_growth_mib": round(allowed_mib, 2),
        "levels_off": last_growth <= allowed_mib,
    }
    if rps:
        out["slope_last_half_mib_per_100k_requests"] = round(last_slope * 100_000 / rps, 3)
    return out


class RssSampler(threading.Thread):
    """Reads the process tree's VmRSS every ``interval_s`` until :meth:`stop`."""

    def __init__(self, pid: int, interval_s: float = 2.0) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[RssSample] = []
        self._halt = threading.Event()
        self._start_time = time.monotonic()

    def sample(self) -> None:
        rss = procs.memory_kb(procs.process_tree(self.pid))["rss_kb"]
        if rss:
            self.samples.append(RssSample(round(time.monotonic() - self._start_time, 3), rss))

    def run(self) -> None:
        self._start_time = time.monotonic()
        self.sample()
        while not self._halt.wait(self.interval_s):
            self.sample()

    def stop(self) -> list[RssSample]:
        self._halt.set()
        self.join(timeout=self.interval_s + 5)
        self.sample()
        return self.samples


def run_soak(target: Target, body: dict[str, Any], workdir: Path, total_requests: int = 200_000,
             connections: int = 64, segment_s: float = 10.0, interval_s: float = 2.0,
             deadline_s: float = 300.0) -> dict[str, Any]:
    """At least ``total_requests`` through ``target`` (stops at ``deadline_s`` regardless); RSS trend."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "soak.lua"
    headers = {"Content-Type": "application/json", **target.headers}
    script.write_text(wrk.lua_script("POST", json.dumps(body), headers))
    sampler = RssSampler(target.pid, interval_s)
    requests = 0
    errors: dict[str, int] = {}
    segments = 0
    started = time.monotonic()
    sampler.start()
    try:
        while requests < total_requests and time.monotonic() - started < deadline_s:
            cmd = wrk.wrk_command(target.url + CHAT_PATH, str(script), connections, segment_s)
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=segment_s + 60)
            if done.returncode != 0:
                raise RuntimeError(f"wrk failed during the soak: {done.stderr.strip() or done.stdout.strip()}")
            result = wrk.parse_output(done.stdout)
            requests += result.requests
            segments += 1
            for name, count in result.errors.items():
                errors[name] = errors.get(name, 0) + count
    finally:
        samples = sampler.stop()
    elapsed = time.monotonic() - started
    rps = requests / elapsed if elapsed else 0.0
    return {
        "requests": requests,
        "target_requests": total_requests,
        "complete": requests >= total_requests,
        "segments": segments,
        "connections": connections,
        "elapsed_s": round(elapsed, 1),
        "rps": round(rps, 1),
        "errors": errors,
        "interval_s": interval_s,
        "trend": rss_trend(samples, rps) if len(samples) >= 4 else None,
        "rss_samples_kb": [[s.t_s, s.rss_kb] for s in samples],
    }
