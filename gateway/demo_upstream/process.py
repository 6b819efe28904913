"""Run the demo upstream as a child process (tests, benchmark, ``newapi dev``).

:meth:`DemoUpstreamProcess.spawn` starts ``python -m newapi_gateway.demo_upstream --port 0``
(optionally pinned with ``taskset``), reads the ``listening on`` line to learn the port, and
returns a handle that is also the instance's control client.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import IO

from .control import DemoUpstreamControl, DemoUpstreamError

_READY = re.compile(rb"demo-upstream (\S+) listening on (http://\S+)")


class DemoUpstreamProcess(DemoUpstreamControl):
    """A demo upstream child process; stop it with :meth:`stop` (or use it as a context manager)."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, name: str, stderr: IO[bytes]) -> None:
        super().__init__(url, name)
        self.proc = proc
        self._stderr = stderr

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def alive(self) -> bool:
        return self.proc.poll() is None

    @classmethod
    def spawn(
        cls,
        *,
        name: str = "demo",
        api_keys: Sequence[str] = (),
        models: Sequence[str] = (),
        record: int = 1000,
        behavior: str = "",
        host: str = "127.0.0.1",
        port: int = 0,
        cpus: str | None = None,
        python: str = sys.executable,
        startup_timeout: float = 30.0,
    ) -> DemoUpstreamProcess:
        """Start one instance; ``cpus`` (e.g. ``"1"``) pins it with ``taskset -c``."""
        cmd = [python, "-m", "newapi_gateway.demo_upstream", "--host", host, "--port", str(port), "--name", name]
        cmd += ["--record", str(record)]
        for key in api_keys:
            cmd += ["--api-key", key]
        if models:
            cmd += ["--models", ",".join(models)]
        if behavior:
            cmd += ["--behavior", behavior]
        if cpus is not None:
            cmd = ["taskset", "-c", cpus, *cmd]
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - owned by the handle, closed in stop()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=env)
        assert proc.stdout is not None
        deadline = time.monotonic() + startup_timeout
        line = b""
        while True:
            match = _READY.search(line)
            if match:
                return cls(proc, match.group(2).decode(), name, stderr)
            remaining = deadline - time.monotonic()
            if proc.poll() is not None or remaining <= 0:
                stopped = proc.poll() is not None
                _terminate(proc)
                stderr.seek(0)
                detail = stderr.read().decode("utf-8", "replace").strip()
                stderr.close()
                why = f"exited with {proc.returncode}" if stopped else f"did not report ready within {startup_timeout}s"
                raise DemoUpstreamError(f"demo upstream {name!r} ({' '.join(cmd)}) {why}: {detail or '(no output)'}")
            ready, _, _ = select.select([proc.stdout], [], [], min(remaining, 0.2))
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                line += chunk

    def stderr_text(self) -> str:
        """What the process wrote on stderr so far (for failure messages)."""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        _terminate(self.proc, timeout)
        with contextlib.suppress(Exception):
            self._stderr.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> DemoUpstreamProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
