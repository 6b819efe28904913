"""How quiet the system-under-test core was: CPU time on it that the system under test did not use.

The layout gives the SUT a core of its own, but nothing stops other work on the machine (a test
suite, another benchmark) from running there. /proc/stat tells how busy the core was during a
measurement; the SUT's own CPU time (its process tree) is subtracted; the rest is *foreign*. A
scenario measured with more than :data:`FOREIGN_WARN_PCT` % foreign time is flagged in the table.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procs

FOREIGN_WARN_PCT = 5.0


@dataclass(frozen=True)
class CoreTicks:
    """Busy and total clock ticks of one CPU since boot."""

    busy: int
    total: int


def parse_proc_stat(text: str, cpu: int) -> CoreTicks:
    """The ``cpuN`` line of /proc/stat (pure): busy = all but idle and iowait."""
    prefix = f"cpu{cpu} "
    for line in text.splitlines():
        if line.startswith(prefix):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            # guest time is already counted in user/nice
            total = sum(values[:8])
            return CoreTicks(busy=total - idle, total=total)
    raise ValueError(f"no {prefix.strip()} line in /proc/stat")


def foreign(before: CoreTicks, after: CoreTicks, sut_cpu_s: float, ticks_per_s: int) -> dict[str, float]:
    """Busy share of the core and the share the SUT did not account for, in % (pure)."""
    total = after.total - before.total
    if total <= 0:
        return {"busy_pct": 0.0, "foreign_pct": 0.0}
    busy = after.busy - before.busy
    sut = sut_cpu_s * ticks_per_s
    return {"busy_pct": round(100 * busy / total, 1), "foreign_pct": round(max(0.0, 100 * (busy - sut) / total), 1)}


class CoreWatch:
    """Watch one core over a measurement: ``start()``, then ``stop()`` -> busy/foreign %.

    ``pid``: the system under test running on that core (its CPU time is not foreign); None when
    nothing of the benchmark runs there (the direct scenario).
    """

    def __init__(self, cpu: int, pid: int | None) -> None:
        self.cpu = cpu
        self.pid = pid
        self._ticks = CoreTicks(0, 0)
        self._sut = 0.0
        self._t = 0.0

    def _read(self) -> CoreTicks:
        return parse_proc_stat(Path("/proc/stat").read_text(), self.cpu)

    def _sut_cpu(self) -> float:
        return procs.cpu_seconds(procs.process_tree(self.pid)) if self.pid is not None else 0.0

    def start(self) -> None:
        self._ticks, self._sut, self._t = self._read(), self._sut_cpu(), time.monotonic()

    def stop(self) -> dict[str, Any]:
        sut = self._sut_cpu() - self._sut
        out: dict[str, Any] = foreign(self._ticks, self._read(), sut, os.sysconf("SC_CLK_TCK"))
        out["cpu"] = self.cpu
        out["seconds"] = round(time.monotonic() - self._t, 1)
        return out
