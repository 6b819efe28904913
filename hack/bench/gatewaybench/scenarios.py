"""The systems under test: direct (no hop), nginx (the floor for a proxy hop), the gateway.

A scenario starts its system (pinned to the SUT CPU) in front of the shared demo upstream and
returns a :class:`Target`; when it cannot run here it raises :class:`Unavailable` with the reason,
which the report shows instead of failing the whole run. Adding a scenario (issue 8: full path,
LiteLLM, Portkey) = one more class with ``name``, ``description`` and ``start(ctx)``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import procs

BENCH_MODEL = "bench-model"
BENCH_KEY = "sk-bench-0123456789abcdef"
CHAT_PATH = "/v1/chat/completions"

#: How the gateway is started. Placeholders: {newapi} (console script), {port}, and the files
#: written by :func:`gateway_files` ({routes}, {keys}, {credentials}). Override with --gateway-cmd.
DEFAULT_GATEWAY_COMMAND = (
    "{newapi} gateway --routes {routes} --keys {keys} --upstream-credentials {credentials} "
    "--host 127.0.0.1 --port {port} --log-level warning"
)
#: Path polled until the gateway is ready (2xx).
GATEWAY_READY_PATH = "/readyz"


class Unavailable(Exception):
    """The scenario cannot run on this machine/checkout; the message says why."""


@dataclass
class Context:
    """What every scenario gets: the demo upstream's base URL, a work dir, the CPUs, tools."""

    upstream_url: str
    upstream_pid: int
    workdir: Path
    sut_cpus: str
    tools: dict[str, str]


@dataclass
class Target:
    """A running system under test: where to send requests, which process tree to measure."""

    url: str
    pid: int
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""
    close: Callable[[], None] = lambda: None


class Scenario(Protocol):
    name: str
    description: str

    def start(self, ctx: Context) -> Target: ...


def _pinned(cpus: str, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *cmd]


def _log_tail(path: Path, limit: int = 1500) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "(no log)"
    return text[-limit:] or "(empty log)"


class Direct:
    """wrk -> demo upstream, no hop (CPU 0 idle; RSS shown is the upstream's)."""

    name = "direct"
    description = "load generator -> demo upstream, no proxy"

    def start(self, ctx: Context) -> Target:
        return Target(
            url=ctx.upstream_url,
            pid=ctx.upstream_pid,
            headers={"Authorization": f"Bearer {BENCH_KEY}"},
            note="no hop; RSS/CPU are the demo upstream's",
        )


def nginx_conf(workdir: Path, listen_port: int, upstream_host: str, upstream_port: int, as_root: bool) -> str:
    """nginx.conf: one worker, upstream keepalive, proxy_buffering off, no access log."""
    temp = workdir / "nginx-temp"
    return f"""
{"user root;" if as_root else ""}
worker_processes 1;
daemon off;
pid {workdir / "nginx.pid"};
error_log {workdir / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {temp}/client;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests 1000000;
    upstream demo {{
        server {upstream_host}:{upstream_port};
        keepalive 256;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{listen_port};
        location / {{
            proxy_pass http://demo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


class Nginx:
    """Debian nginx-light, one worker pinned to the SUT CPU, as the floor of any proxy hop."""

    name = "nginx"
    description = "nginx-light reverse proxy (1 worker, upstream keepalive, proxy_buffering off)"

    def start(self, ctx: Context) -> Target:
        nginx = ctx.tools.get("nginx")
        if not nginx:
            raise Unavailable("nginx is not installed (apt-get install -y nginx-light)")
        workdir = ctx.workdir / "nginx"
        (workdir / "nginx-temp").mkdir(parents=True, exist_ok=True)
        port = procs.free_port()
        host, _, up_port = ctx.upstream_url.removeprefix("http://").rpartition(":")
        conf = workdir / "nginx.conf"
        conf.write_text(nginx_conf(workdir, port, host, int(up_port), os.geteuid() == 0))
        log = workdir / "nginx-error.log"
        cmd = _pinned(ctx.sut_cpus, [nginx, "-p", str(workdir), "-c", str(conf), "-e", str(log)])
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            procs.wait_http(url + "/__demo/health", 20, proc)
        except procs.BenchSetupError as exc:
            procs.stop(proc)
            raise Unavailable(f"nginx did not start: {exc}; log: {_log_tail(log)}") from None
        return Target(
            url=url, pid=proc.pid, headers={"Authorization": f"Bearer {BENCH_KEY}"}, close=lambda: procs.stop(proc)
        )


def gateway_files(workdir: Path, upstream_url: str) -> dict[str, str]:
    """Routing table, key file and upstream credentials for a pass-through gateway to the demo upstream."""
    routes = {
        "schemaVersion": 1,
        "instance": "bench",
        "channels": [
            {
                "name": "demo",
                "type": "vllm",
                "endpoint": upstream_url + "/v1",
                "models": [BENCH_MODEL],
                "attestation": {"kind": "in-cluster", "owner": "bench"},
            }
        ],
        "policy": {},
    }
    keys = {"keys": [{"key": BENCH_KEY, "id": "bench", "customer": "bench"}]}
    paths = {"routes": workdir / "routes.json", "keys": workdir / "keys.json", "credentials": workdir / "creds.json"}
    paths["routes"].write_text(json.dumps(routes, indent=2))
    paths["keys"].write_text(json.dumps(keys, indent=2))
    paths["credentials"].write_text("{}")
    return {name: str(path) for name, path in paths.items()}


def newapi_script() -> str | None:
    """The ``newapi`` console script of this interpreter's environment."""
    candidate = Path(sys.executable).parent / "newapi"
    return str(candidate) if candidate.exists() else None


class Gateway:
    """``newapi gateway`` pass-through, pinned to the SUT CPU; command from a template."""

    description = "newapi gateway, pass-through (static key file, one vllm channel)"

    def __init__(
        self,
        command: str = DEFAULT_GATEWAY_COMMAND,
        name: str = "gateway",
        files: Callable[[Path, str], dict[str, str]] = gateway_files,
        ready_path: str = GATEWAY_READY_PATH,
    ) -> None:
        self.command = command
        self.name = name
        self.files = files
        self.ready_path = ready_path

    def start(self, ctx: Context) -> Target:
        newapi = newapi_script()
        if newapi is None:
            raise Unavailable(f"no newapi console script next to {sys.executable} (pip install -e . in that venv)")
        probe = subprocess.run([newapi, "gateway", "--help"], capture_output=True, text=True, timeout=60)
        if probe.returncode != 0 or "not implemented" in (probe.stdout + probe.stderr):
            raise Unavailable(
                f"`newapi gateway` is not implemented yet ({(probe.stderr or probe.stdout).strip()[:200]})"
            )
        workdir = ctx.workdir / self.name
        workdir.mkdir(parents=True, exist_ok=True)
        port = procs.free_port()
        values = {"newapi": newapi, "port": str(port), **self.files(workdir, ctx.upstream_url)}
        try:
            cmd = shlex.split(self.command.format(**values))
        except KeyError as exc:
            raise Unavailable(
                f"gateway command template uses unknown placeholder {exc}; known: {sorted(values)}"
            ) from None
        log = workdir / "gateway.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                _pinned(ctx.sut_cpus, cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        url = f"http://127.0.0.1:{port}"
        try:
            procs.wait_http(url + self.ready_path, 60, proc)
        except procs.BenchSetupError as exc:
            procs.stop(proc)
            raise Unavailable(
                f"gateway did not become ready ({shlex.join(cmd)}): {exc}; log: {_log_tail(log)}"
            ) from None
        return Target(
            url=url,
            pid=proc.pid,
            headers={"Authorization": f"Bearer {BENCH_KEY}"},
            note=f"log: {log}",
            close=lambda: procs.stop(proc),
        )
