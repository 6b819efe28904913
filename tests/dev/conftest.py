"""``newapi dev`` as a real process: start it on free ports, read what it prints, stop it, find its children."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from newapi_operator.dev.ports import free_port

NEWAPI = str(Path(sys.executable).parent / "newapi")
#: How long a start may take before a test gives up (the acceptance bound is 30 s; leave room on a busy CI box).
START_TIMEOUT = 90.0
KEY_LINE = re.compile(r"^\s+sample key\s+(sk-\S+)\s+\(CustomerKey (\S+)\)")


@dataclass(frozen=True)
class DevPorts:
    apiserver: int
    gateway: int
    admin: int
    demo: int

    @classmethod
    def free(cls) -> DevPorts:
        return cls(free_port(), free_port(), free_port(), free_port())

    def args(self) -> list[str]:
        return ["--apiserver-port", str(self.apiserver), "--gateway-port", str(self.gateway),
                "--admin-port", str(self.admin), "--demo-upstream-port", str(self.demo)]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


class DevRun:
    """One ``newapi dev`` process; its output is collected line by line."""

    def __init__(self, cwd: Path, state_dir: Path, ports: DevPorts, extra: list[str] | None = None) -> None:
        self.cwd = cwd
        self.state_dir = state_dir
        self.ports = ports
        self.argv = [NEWAPI, "dev", "--state-dir", str(state_dir), *ports.args(), *(extra or [])]
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None
        self.started = 0.0

    def start(self) -> DevRun:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The first output line matching ``pattern`` (fails with the whole output after ``timeout``)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = regex.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                assert self.proc is not None
                if self.proc.poll() is not None and seen == len(self.lines):
                    pytest.fail(f"newapi dev exited ({self.proc.returncode}) before printing {pattern!r}:\n"
                                f"{self.output}\n{self.logs()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"newapi dev did not print {pattern!r} within {timeout} s:\n{self.output}\n"
                                f"{self.logs()}")
                self._cond.wait(min(remaining, 0.5))

    def sample_key(self) -> str:
        return self.wait_for(KEY_LINE.pattern).group(1)

    def children(self) -> list[int]:
        assert self.proc is not None
        return children_of(self.proc.pid)

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"newapi dev did not stop within {timeout} s after {sig.name}:\n{self.output}")

    def kill_everything(self) -> None:
        """Cleanup after a failed test: the process and whatever children it left."""
        if self.proc is None:
            return
        kids = self.children()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in kids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

    def logs(self) -> str:
        out = []
        for path in sorted((self.state_dir / "logs").glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-25:]
            out.append(f"--- {path.name} (last lines)\n" + "\n".join(text))
        return "\n".join(out)


def chat(url: str, key: str, content: str, model: str = "qwen3-32b", **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=10, trust_env=False,
                      headers={"Authorization": f"Bearer {key}", **headers},
                      json={"model": model, "messages": [{"role": "user", "content": content}]})


def balance(url: str, key: str) -> int:
    rsp = httpx.get(f"{url}/quota", headers={"Authorization": f"Bearer {key}"}, timeout=10, trust_env=False)
    assert rsp.status_code == 200, rsp.text
    value: int = rsp.json()["credit"]["balance"]
    return value


@pytest.fixture
def dev_runs() -> Iterator[list[DevRun]]:
    """Every DevRun a test appends is killed (with its children) at the end if still running."""
    runs: list[DevRun] = []
    yield runs
    for run in runs:
        run.kill_everything()
