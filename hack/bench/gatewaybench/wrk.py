"""wrk: the Lua script the benchmark gives it, its command line, and parsing its output.

The script's ``done`` hook prints one machine-readable line (``BENCH_JSON {...}``) with exact
counts and latency percentiles in microseconds, so nothing depends on wrk's rounded text. The
text summary is parsed too, as a cross-check and for wrk builds whose Lua ``done`` fails.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MARKER = "BENCH_JSON "

_DONE_HOOK = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""


def lua_string(text: str) -> str:
    """``text`` as a double-quoted Lua string literal (bytes outside printable ASCII as ``\\ddd``)."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def lua_script(method: str, body: str, headers: dict[str, str]) -> str:
    """A wrk script sending ``method`` with ``body`` and ``headers`` on every request."""
    lines = [f"wrk.method = {lua_string(method)}", f"wrk.body = {lua_string(body)}"]
    lines += [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n" + _DONE_HOOK


def wrk_command(
    url: str, script: str, connections: int, duration_s: float, threads: int = 1, timeout_s: float = 5.0
) -> list[str]:
    """The wrk command line (``--latency`` for the text percentiles too)."""
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "--latency",
        "-s",
        script,
        url,
    ]


@dataclass
class WrkResult:
    """One wrk run: throughput, errors and latency percentiles (milliseconds)."""

    requests: int
    duration_s: float
    rps: float
    errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "errors": self.errors,
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
        }


class WrkParseError(ValueError):
    """wrk's output holds neither the BENCH_JSON line nor a parsable summary."""


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_text(output: str) -> WrkResult:
    """Parse wrk's human summary (``--latency`` output)."""
    total = re.search(r"(\d+) requests in " + _TIME, output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not total or not rps:
        raise WrkParseError(f"no wrk summary in output: {output[-500:]!r}")
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if sock:
        errors.update(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors["status"] = int(non2xx.group(1))
    latency: dict[str, float] = {}
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)(?:\.000)?%\s+" + _TIME, output, re.M):
        latency[f"p{pct}"] = _ms(value, unit)
    stats = re.search(r"Latency\s+" + _TIME + r"\s+" + _TIME + r"\s+" + _TIME, output)
    if stats:
        latency["mean"] = _ms(stats.group(1), stats.group(2))
        latency["max"] = _ms(stats.group(5), stats.group(6))
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=_ms(total.group(2), total.group(3)) / 1000,
        rps=float(rps.group(1)),
        errors=errors,
        latency_ms=latency,
    )


def parse_output(output: str) -> WrkResult:
    """Parse a wrk run's stdout: the BENCH_JSON line when present, else the text summary."""
    for line in output.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            duration_s = data["duration_us"] / 1e6
            return WrkResult(
                requests=data["requests"],
                duration_s=duration_s,
                rps=data["requests"] / duration_s if duration_s else 0.0,
                errors={k: int(v) for k, v in data["errors"].items()},
                latency_ms={k: v / 1000 for k, v in data["latency_us"].items()},
            )
    return parse_text(output)
