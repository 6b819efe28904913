"""Child processes of ``newapi dev``: each in its own process group, output to a log file.

Stopping sends SIGTERM to the whole group, waits, then SIGKILL. Every child is started through
:mod:`.childexec`, so it also gets SIGTERM if ``newapi dev`` itself is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO


def _open_log(path: Path, header: str) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "ab")  # noqa: SIM115 - closed by the caller once the child has it
    log.write(header.encode())
    log.flush()
    return log


class Child:
    """One child process: ``argv`` with ``env`` in ``cwd``, stdout and stderr appended to ``log_path``."""

    def __init__(self, name: str, argv: list[str], *, log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.stopping = False

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        with _open_log(self.log_path, f"--- newapi dev: starting {self.name}: {' '.join(self.argv)}\n") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "newapi_operator.dev.childexec", str(os.getpid()), *self.argv,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
                env=self.env, cwd=self.cwd, start_new_session=True,
            )

    async def wait(self) -> int:
        assert self.proc is not None, "not started"
        return await self.proc.wait()

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL to the process group at once (a second Ctrl-C)."""
        if self.running:
            self._signal_group(signal.SIGKILL)

    async def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.proc is None:
            return None
        self.stopping = True
        if self.proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                self._signal_group(signal.SIGKILL)
                await self.proc.wait()
        return self.proc.returncode


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file (for error messages)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            data = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
