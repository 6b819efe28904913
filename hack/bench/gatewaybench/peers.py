"""The peers: LiteLLM proxy (the Python gateway a Python shop would pick) and Portkey's gateway (Node).

Each runs exactly like our gateway in the benchmark: alone on the SUT CPU (``taskset``), one
process/worker, loopback only, in front of the same demo upstream. Each lives in its own
environment under ``hack/bench/.venvs/`` (never in the project's virtualenv):

- ``.venvs/litellm``: a venv with ``litellm[proxy]==1.106.2`` and ``opentelemetry-sdk``; started as
  ``litellm --config <file> --num_workers 1`` with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` (no cost
  map download), a master key, no database, ``LITELLM_LOG=ERROR`` (no access log, as our gateway
  runs at ``--log-level warning``).
- ``.venvs/portkey``: an npm project with ``@portkey-ai/gateway`` and the override
  ``@hono/node-server@1.13.5`` (its streaming needs it). Portkey's server listens on every
  interface; a preload module (:data:`LOOPBACK_PRELOAD`) forces ``127.0.0.1``. It has no auth of
  its own: the upstream is chosen per request by headers (:func:`portkey_headers`).

The environments are created on first use when ``install`` is allowed (about a minute for
LiteLLM, seconds for Portkey); when that fails the scenario is *not available* with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import procs
from .scenarios import BENCH_MODEL, Context, Target, Unavailable

LITELLM_VERSION = "1.106.2"
LITELLM_REQUIREMENTS = (f"litellm[proxy]=={LITELLM_VERSION}", "opentelemetry-sdk")
LITELLM_MASTER_KEY = "sk-litellm-bench-master-0123456789"
PORTKEY_PACKAGE = "@portkey-ai/gateway"
#: Portkey's streaming breaks with newer @hono/node-server releases: pinned through npm overrides.
HONO_NODE_SERVER = "1.13.5"
#: The key the peers send to the demo upstream (it accepts any key).
UPSTREAM_KEY = "sk-bench-upstream"

#: Default home of the peers' environments (gitignored).
VENVS_DIR = Path(__file__).resolve().parent.parent / ".venvs"

#: Node preload (``node --import``): every ``net.Server.listen`` binds 127.0.0.1, whatever the app asks.
LOOPBACK_PRELOAD = """\
import net from 'node:net';
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'object' && args[0] !== null) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  } else if (typeof args[0] === 'number' || typeof args[0] === 'string') {
    const callbacks = args.slice(1).filter((a) => typeof a === 'function');
    args = [args[0], '127.0.0.1', ...callbacks];
  }
  return listen.apply(this, args);
};
"""


def litellm_config(upstream_url: str, model: str = BENCH_MODEL, master_key: str = LITELLM_MASTER_KEY) -> str:
    """LiteLLM proxy config.yaml: one openai-compatible model routed to ``upstream_url``/v1, a master
    key, no database (JSON is valid YAML, so no YAML writer is needed)."""
    config = {
        "model_list": [{
            "model_name": model,
            "litellm_params": {"model": f"openai/{model}", "api_base": upstream_url.rstrip("/") + "/v1",
                               "api_key": UPSTREAM_KEY},
        }],
        "general_settings": {"master_key": master_key},
        "litellm_settings": {"drop_params": True},
    }
    return json.dumps(config, indent=2) + "\n"


def litellm_env(base: dict[str, str]) -> dict[str, str]:
    """The LiteLLM process's environment: local cost map, errors-only logs, no database."""
    env = {k: v for k, v in base.items() if k not in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST")}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", PYTHONUNBUFFERED="1")
    return env


def litellm_command(venv: Path, config: Path, port: int) -> list[str]:
    return [str(venv / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", "1"]


def portkey_package_json() -> str:
    """package.json of the Portkey environment (latest gateway, @hono/node-server overridden)."""
    doc = {
        "name": "newapi-bench-portkey",
        "private": True,
        "description": "Portkey gateway as a benchmark peer (hack/bench/gatewaybench/peers.py)",
        "dependencies": {PORTKEY_PACKAGE: "*"},
        "overrides": {"@hono/node-server": HONO_NODE_SERVER},
    }
    return json.dumps(doc, indent=2) + "\n"


def portkey_command(node: str, preload: Path, server_js: Path, port: int) -> list[str]:
    return [node, "--import", preload.as_uri(), str(server_js), f"--port={port}", "--headless"]


def portkey_headers(upstream_url: str) -> dict[str, str]:
    """Per-request routing headers: the openai provider at the demo upstream's /v1."""
    return {
        "Authorization": f"Bearer {UPSTREAM_KEY}",
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": upstream_url.rstrip("/") + "/v1",
    }


# ---------------------------------------------------------------------------------------------
# environments (I/O)
# ---------------------------------------------------------------------------------------------


VENVS_GITIGNORE = "# created by hack/bench/gatewaybench/peers.py: the peers' environments are never committed\n*\n"


def prepare_venvs_dir(venvs: Path) -> None:
    """Create ``venvs`` with a ``.gitignore`` of ``*``: git, ruff and editors skip it wherever it is."""
    venvs.mkdir(parents=True, exist_ok=True)
    ignore = venvs / ".gitignore"
    if not ignore.exists():
        ignore.write_text(VENVS_GITIGNORE)


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _installed_litellm(venv: Path) -> str | None:
    python = venv / "bin" / "python"
    if not python.exists() or not (venv / "bin" / "litellm").exists():
        return None
    done = _run([str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'), "
                 "m.version('opentelemetry-sdk'))"], timeout=60)
    return done.stdout.split()[0] if done.returncode == 0 and done.stdout.strip() else None


def ensure_litellm(venvs: Path = VENVS_DIR, install: bool = True) -> Path:
    """The LiteLLM venv (created and installed when missing and ``install``); raises Unavailable."""
    venv = venvs / "litellm"
    if _installed_litellm(venv) == LITELLM_VERSION:
        return venv
    wanted = " ".join(repr(r) for r in LITELLM_REQUIREMENTS)
    if not install:
        raise Unavailable(f"no LiteLLM {LITELLM_VERSION} venv at {venv}: python3 -m venv {venv} && "
                          f"{venv}/bin/pip install {wanted} (or run without --no-install)")
    print(f"==> installing LiteLLM {LITELLM_VERSION} into {venv} (once; about a minute)", file=sys.stderr, flush=True)
    prepare_venvs_dir(venvs)
    python = shutil.which("python3") or sys.executable
    for cmd in ([python, "-m", "venv", str(venv)],
                [str(venv / "bin" / "pip"), "install", "-q", *LITELLM_REQUIREMENTS]):
        done = _run(cmd)
        if done.returncode != 0:
            tail = "\n".join(line for line in (done.stderr or done.stdout).splitlines()
                             if "is ignored" not in line)[-800:]
            raise Unavailable(f"installing LiteLLM failed ({' '.join(cmd[:4])} ...): {tail}")
    found = _installed_litellm(venv)
    if found != LITELLM_VERSION:
        raise Unavailable(f"LiteLLM venv at {venv} holds version {found}, expected {LITELLM_VERSION}")
    return venv


def _portkey_server(root: Path) -> Path:
    return root / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def ensure_portkey(venvs: Path = VENVS_DIR, install: bool = True) -> tuple[str, Path, Path]:
    """``(node, preload module, start-server.js)`` of the Portkey environment; raises Unavailable."""
    node = shutil.which("node")
    if node is None:
        raise Unavailable("node is not installed (apt-get install -y nodejs npm)")
    root = venvs / "portkey"
    server = _portkey_server(root)
    package_json = portkey_package_json()
    stale = not (root / "package.json").exists() or (root / "package.json").read_text() != package_json
    if stale or not server.exists():
        npm = shutil.which("npm")
        if not install or npm is None:
            raise Unavailable(f"no Portkey gateway at {server}: mkdir -p {root} && write its package.json "
                              f"(peers.portkey_package_json()) && npm install --prefix {root}")
        print(f"==> installing {PORTKEY_PACKAGE} into {root} (npm)", file=sys.stderr, flush=True)
        prepare_venvs_dir(venvs)
        root.mkdir(parents=True, exist_ok=True)
        (root / "package.json").write_text(package_json)
        done = _run([npm, "install", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=root)
        if done.returncode != 0 or not server.exists():
            raise Unavailable(f"npm install of {PORTKEY_PACKAGE} failed: {(done.stderr or done.stdout)[-800:]}")
    hono = root / "node_modules" / "@hono" / "node-server" / "package.json"
    version = json.loads(hono.read_text()).get("version") if hono.exists() else None
    if version != HONO_NODE_SERVER:
        raise Unavailable(f"@hono/node-server is {version} in {root}, the override wants {HONO_NODE_SERVER}: "
                          f"rm -rf {root}/node_modules and run again")
    preload = root / "loopback.mjs"
    if not preload.exists() or preload.read_text() != LOOPBACK_PRELOAD:
        preload.write_text(LOOPBACK_PRELOAD)
    return node, preload, server


def portkey_version(server_js: Path) -> str:
    package = server_js.parent.parent / "package.json"
    try:
        return str(json.loads(package.read_text()).get("version", "?"))
    except (OSError, ValueError):
        return "?"


def _log_tail(path: Path, limit: int = 1500) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "(no log)"
    return text[-limit:] or "(empty log)"


_LOOPBACK_HEX = ("0100007F", "00000000000000000000000001000000")  # 127.0.0.1 and ::1 as /proc writes them


def non_loopback_listeners(proc_net_tcp: str, port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp{,6}) listening on ``port`` that are not loopback (pure)."""
    found = []
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[0] == "sl":
            continue
        address, _, hex_port = fields[1].rpartition(":")
        if fields[3] == "0A" and int(hex_port, 16) == port and address not in _LOOPBACK_HEX:  # 0A = LISTEN
            found.append(address)
    return found


def listens_only_on_loopback(port: int) -> bool:
    """True unless something listens on ``port`` on a non-loopback address."""
    text = ""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            text += Path(table).read_text()
        except OSError:
            continue
    return not non_loopback_listeners(text, port)


def _start(ctx: Context, name: str, cmd: list[str], env: dict[str, str], ready_url: str,
           timeout: float) -> tuple[subprocess.Popen[bytes], Path]:
    workdir = ctx.workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["taskset", "-c", ctx.sut_cpus, *cmd], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=workdir)
    try:
        procs.wait_http(ready_url, timeout, proc)
    except procs.BenchSetupError as exc:
        procs.stop(proc)
        raise Unavailable(f"{name} did not become ready ({' '.join(cmd)}): {exc}; log: {_log_tail(log)}") from None
    return proc, log


class LiteLLM:
    """LiteLLM proxy, one worker, no database, master key auth, pinned to the SUT CPU."""

    name = "litellm"
    description = f"LiteLLM proxy {LITELLM_VERSION} (1 worker, master key, no database)"

    def __init__(self, venvs: Path = VENVS_DIR, install: bool = True) -> None:
        self.venvs = venvs
        self.install = install

    def start(self, ctx: Context) -> Target:
        venv = ensure_litellm(self.venvs, self.install)
        workdir = ctx.workdir / self.name
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "config.yaml"
        config.write_text(litellm_config(ctx.upstream_url))
        port = procs.free_port()
        proc, log = _start(ctx, self.name, litellm_command(venv, config, port), litellm_env(dict(os.environ)),
                           f"http://127.0.0.1:{port}/health/liveliness", 120)
        return Target(url=f"http://127.0.0.1:{port}", pid=proc.pid,
                      headers={"Authorization": f"Bearer {LITELLM_MASTER_KEY}"},
                      note=f"log: {log}", close=lambda: procs.stop(proc, timeout=20))


class Portkey:
    """Portkey's open-source gateway on Node, forced to loopback, pinned to the SUT CPU."""

    name = "portkey"
    description = "Portkey gateway (Node, @hono/node-server 1.13.5, loopback only; no auth)"

    def __init__(self, venvs: Path = VENVS_DIR, install: bool = True) -> None:
        self.venvs = venvs
        self.install = install

    def start(self, ctx: Context) -> Target:
        node, preload, server = ensure_portkey(self.venvs, self.install)
        port = procs.free_port()
        env = dict(os.environ, NODE_ENV="production")
        proc, log = _start(ctx, self.name, portkey_command(node, preload, server, port), env,
                           f"http://127.0.0.1:{port}/", 60)
        if not listens_only_on_loopback(port):
            procs.stop(proc)
            raise Unavailable(f"Portkey listened on a non-loopback address on port {port}: the preload did not apply")
        return Target(url=f"http://127.0.0.1:{port}", pid=proc.pid, headers=portkey_headers(ctx.upstream_url),
                      note=f"{PORTKEY_PACKAGE} {portkey_version(server)}; log: {log}",
                      close=lambda: procs.stop(proc, timeout=20))
