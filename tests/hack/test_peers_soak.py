"""The soak's RSS trend (hack/bench/gatewaybench/soak.py): the verdict on synthetic series, and the
sampler reading a real process's /proc. No timing is asserted."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "hack" / "bench"
sys.path.insert(0, str(BENCH_DIR))

from gatewaybench import comparison, soak  # noqa: E402


def test_least_squares_slope() -> None:
    assert soak.slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert soak.slope([(0, 1), (0, 5)]) == 0.0
    assert soak.slope([(3, 1)]) == 0.0


def series(values_mib: list[float], every_s: float = 2.0) -> list[soak.RssSample]:
    return [soak.RssSample(i * every_s, int(v * 1024)) for i, v in enumerate(values_mib)]


def test_growth_while_warming_up_then_flat_levels_off() -> None:
    values = [60, 70, 76, 78, 79, 79.5] + [80 + (0.1 if i % 2 else 0) for i in range(30)]
    trend = soak.rss_trend(series(values), rps=3000)
    assert trend["levels_off"] is True
    assert trend["slope_first_half_mib_per_min"] > trend["slope_last_half_mib_per_min"]
    assert trend["rss_mib_start"] == 60
    assert trend["rss_mib_max"] == 80.1
    assert trend["samples"] == 36
    assert "slope_last_half_mib_per_100k_requests" in trend


def test_steady_growth_is_a_leak() -> None:
    values = [80 + 0.5 * i for i in range(40)]  # 15 MiB/min, forever
    trend = soak.rss_trend(series(values))
    assert trend["levels_off"] is False
    assert trend["slope_last_half_mib_per_min"] == pytest.approx(15.0)
    assert trend["growth_last_half_mib"] == pytest.approx(9.5)
    text = comparison.soak_text({"scenario": "fullpath", "requests": 200_100, "target_requests": 200_000,
                                 "complete": True, "elapsed_s": 80.0, "rps": 2500.0, "connections": 64,
                                 "errors": {"status": 0}, "interval_s": 2.0, "trend": trend})
    assert "[FAIL] RSS levels off" in text
    assert "200,100 requests" in text


def test_growth_within_tolerance_of_a_large_process_levels_off() -> None:
    # 500 MiB process creeping 4 MiB over the last half: within 2% (10 MiB)
    values = [500.0] * 20 + [500 + 4 * i / 19 for i in range(20)]
    assert soak.rss_trend(series(values))["levels_off"] is True
    assert soak.rss_trend(series(values), tolerance_fraction=0.001)["levels_off"] is False


def test_too_few_samples_is_an_error_not_a_verdict() -> None:
    with pytest.raises(ValueError, match="at least 4 RSS samples"):
        soak.rss_trend(series([1, 2, 3]))


def test_sampler_reads_a_real_process_rss() -> None:
    sampler = soak.RssSampler(os.getpid(), interval_s=0.01)
    sampler.start()
    deadline = time.monotonic() + 30
    while len(sampler.samples) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    samples = sampler.stop()
    assert len(samples) >= 4  # three while running, one at stop
    assert all(s.rss_kb > 1000 for s in samples)
    assert [s.t_s for s in samples] == sorted(s.t_s for s in samples)
    assert not sampler.is_alive()
