"""Processes of the benchmark: tools, ports, readiness, and /proc readings (RSS, CPU time)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

#: Debian packages of the external tools and the binaries they provide.
TOOLS = {"wrk": "wrk", "nginx": "nginx-light"}


class BenchSetupError(RuntimeError):
    """The machine cannot run the benchmark as asked; the message says what to do."""


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found is None and name == "nginx" and Path("/usr/sbin/nginx").exists():
        found = "/usr/sbin/nginx"
    return found


def ensure_tools(install: bool) -> dict[str, str]:
    """Paths of wrk and nginx; installs the Debian packages when missing and allowed (root + apt)."""
    missing = [name for name in TOOLS if find_tool(name) is None]
    if missing and install and os.geteuid() == 0 and shutil.which("apt-get"):
        packages = [TOOLS[name] for name in missing]
        print(f"==> installing {' '.join(packages)} (apt-get)", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)
        missing = [name for name in TOOLS if find_tool(name) is None]
    if missing:
        wanted = " ".join(TOOLS[name] for name in missing)
        raise BenchSetupError(
            f"missing {', '.join(missing)}: install the Debian packages ({'sudo ' if os.geteuid() else ''}"
            f"apt-get install -y {wanted}) or run as root without --no-install"
        )
    return {name: str(find_tool(name)) for name in TOOLS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 2xx; fail early when ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchSetupError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if 200 <= response.status < 300:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise BenchSetupError(f"{url} did not become ready within {timeout:.0f}s (last: {last})")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/<pid>/task/*/children)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:  # the process (or thread) exited meanwhile
            continue
        for task in tasks:
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return out


#: Niceness of background work sharing the load CPU (the full path's PostgreSQL).
BACKGROUND_NICE = 19


def make_background(pids: list[int], nice: int = BACKGROUND_NICE) -> int:
    """Lower ``pids`` to ``nice``: the process, and — with the kernel's autogroup scheduling on — the
    scheduling group of a process that leads its own session (``/proc/<pid>/autogroup``). Each
    PostgreSQL backend calls ``setsid()``, so each is a group of its own that weighs as much as the
    whole load generator, and its process nice value alone does nothing. A process in someone
    else's session (the postmaster, in the harness's) keeps that session's group untouched: it
    holds the load generator too. Returns how many processes were lowered (best effort)."""
    done = 0
    for pid in pids:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
            own_session = os.getsid(pid) == pid
        except OSError:
            continue
        done += 1
        if own_session:  # with autogroup off the file is absent or inert: the nice value counts
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    return done


def memory_kb(pids: list[int]) -> dict[str, int]:
    """Summed VmRSS and VmHWM (kB) of ``pids``."""
    rss = hwm = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
    return {"rss_kb": rss, "hwm_kb": hwm}


def cpu_seconds(pids: list[int]) -> float:
    """Summed user+system CPU time of ``pids`` (seconds)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
