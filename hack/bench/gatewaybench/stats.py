"""Percentiles and summaries of latency samples (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (``pct`` in 0..100)."""
    if not sorted_values:
        raise ValueError("percentile of no samples")
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def summarize_ns(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50/p90/p99/mean/min/max in milliseconds of nanosecond samples."""
    values = sorted(samples_ns)
    ms = 1e6
    return {
        "n": len(values),
        "p50": percentile(values, 50) / ms,
        "p90": percentile(values, 90) / ms,
        "p99": percentile(values, 99) / ms,
        "mean": sum(values) / len(values) / ms,
        "min": values[0] / ms,
        "max": values[-1] / ms,
    }
