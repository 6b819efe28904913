"""Foreign CPU on the SUT core (hack/bench/gatewaybench/noise.py): /proc/stat parsing and the share
the system under test did not use; read once from the real /proc. No timing is asserted."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "hack" / "bench"
sys.path.insert(0, str(BENCH_DIR))

from gatewaybench import comparison, noise  # noqa: E402

STAT = """cpu  300 0 100 1000 10 0 5 0 0 0
cpu0 200 0 50 400 5 0 5 0 0 0
cpu1 100 0 50 600 5 0 0 0 0 0
intr 1 2 3
"""


def test_proc_stat_line_of_one_core() -> None:
    assert noise.parse_proc_stat(STAT, 0) == noise.CoreTicks(busy=255, total=660)
    assert noise.parse_proc_stat(STAT, 1) == noise.CoreTicks(busy=150, total=755)
    with pytest.raises(ValueError, match="no cpu7 line"):
        noise.parse_proc_stat(STAT, 7)


def test_foreign_share_subtracts_the_system_under_test() -> None:
    before, after = noise.CoreTicks(100, 1000), noise.CoreTicks(900, 2000)  # 80% busy over 1000 ticks
    assert noise.foreign(before, after, sut_cpu_s=7.0, ticks_per_s=100) == {"busy_pct": 80.0, "foreign_pct": 10.0}
    assert noise.foreign(before, after, sut_cpu_s=9.0, ticks_per_s=100)["foreign_pct"] == 0.0  # never negative
    assert noise.foreign(before, before, 0.0, 100) == {"busy_pct": 0.0, "foreign_pct": 0.0}


def test_core_watch_reads_the_real_proc() -> None:
    watch = noise.CoreWatch(0, os.getpid())
    watch.start()
    sum(i * i for i in range(10_000))
    result = watch.stop()
    assert result["cpu"] == 0
    assert 0.0 <= result["foreign_pct"] <= result["busy_pct"] <= 100.0


def test_noisy_scenarios_are_flagged() -> None:
    results = {"direct": {"available": True, "sut_core": {"busy_pct": 2.0, "foreign_pct": 2.0}},
               "fullpath": {"available": True, "sut_core": {"busy_pct": 99.0, "foreign_pct": 31.5}},
               "portkey": {"available": False, "reason": "x"}}
    text = comparison.noise_text(results, {"scenario": "fullpath", "sut_core": {"busy_pct": 95, "foreign_pct": 1.0}})
    assert "direct 2.0%, fullpath 31.5%, soak (fullpath) 1.0%" in text
    assert "more than 5% foreign CPU during: fullpath:" in text
    assert comparison.noise_text({}) == ""
