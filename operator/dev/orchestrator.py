"""``newapi dev``: start everything, print where it is, run until Ctrl-C, stop everything, keep the state.

Order (each step only once the previous one is done, except where said):

1. checks, before anything starts: the state directory is not in use by another ``newapi dev``,
   every port is free, the YAML to apply is readable;
2. the local API server (in this process) with the product's CRDs; the objects of the previous
   run restored from ``<state-dir>/apiserver.json``; ``<state-dir>/kubeconfig`` written;
3. the demo upstream, the operator and the launcher start together; the YAML is applied
   (with the dev and demo overlays, each rewrite printed);
4. once the sample instance's gateway is ready and the sample keys are issued: ``<state-dir>/admin-token``
   and ``<state-dir>/env`` are written and the URLs and keys printed;
5. on SIGINT/SIGTERM: the operator, the gateways and the demo upstream are stopped (SIGTERM to
   each process group, SIGKILL after 10 s; a second Ctrl-C stops at once), the API server's
   objects saved, the API server stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import fcntl
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from newapi_operator.api.v1alpha1 import API_VERSION

from .manifests import Manifest, ManifestError, all_of, demo_overlay, dev_overlay, first_of, load_manifests
from .ports import HOST, PortUse, check_ports
from .processes import Child, tail

log = logging.getLogger("newapi_operator.dev")

PREFIX = "newapi dev:"
#: Seconds a child gets between SIGTERM and SIGKILL.
STOP_TIMEOUT = 10.0
#: Back-off of the operator and demo upstream restarts (seconds).
RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
#: After this many seconds without "ready", say what is still missing (once).
SLOW_START_HINT = 45.0


def _repo_samples() -> Path:
    """The samples shipped with the package (``samples`` links to config/samples in a checkout)."""
    return Path(__file__).resolve().parent / "samples"


@dataclass
class DevConfig:
    """The resolved options of one ``newapi dev`` run."""

    state_dir: Path
    apply: list[Path]
    apiserver_port: int
    gateway_port: int
    admin_port: int
    demo_port: int
    demo: bool
    database_url: str | None
    redis_url: str | None
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DevConfig:
        if args.no_apply:
            apply: list[Path] = []
        elif args.apply:
            apply = [Path(p) for p in args.apply]
        else:
            local = Path("config/samples")
            apply = [local if local.is_dir() or not _repo_samples().is_dir() else _repo_samples()]
        return cls(
            state_dir=Path(args.state_dir),
            apply=apply,
            apiserver_port=args.apiserver_port,
            gateway_port=args.gateway_port,
            admin_port=args.admin_port,
            demo_port=args.demo_upstream_port,
            demo=not args.no_demo_upstream,
            database_url=args.database_url,
            redis_url=args.redis_url,
        )

    def port_uses(self) -> list[PortUse]:
        uses = [
            PortUse(self.apiserver_port, "--apiserver-port", "the local Kubernetes API server"),
            PortUse(self.gateway_port, "--gateway-port", "the customer API"),
            PortUse(self.admin_port, "--admin-port", "the admin API"),
        ]
        if self.demo:
            uses.append(PortUse(self.demo_port, "--demo-upstream-port", "the demo upstream"))
        return uses

    @property
    def gateway_url(self) -> str:
        return f"http://{HOST}:{self.gateway_port}"

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.admin_port}"

    @property
    def demo_url(self) -> str:
        return f"http://{HOST}:{self.demo_port}"


def say(text: str) -> None:
    """One message for people, on stdout."""
    print(f"{PREFIX} {text}", flush=True)


class StateLock:
    """An exclusive lock on ``<state-dir>/dev.lock``: one ``newapi dev`` per state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "dev.lock"
        self._file: IO[str] | None = None

    def holder(self) -> str | None:
        """Who holds the lock (a pid, as text), without taking it; None when free or absent."""
        try:
            with open(self.path) as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return f.read().strip() or "?"
                return None
        except FileNotFoundError:
            return None

    def acquire(self) -> bool:
        self._file = open(self.path, "a+")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            self._file = None
            return False
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def preflight(cfg: DevConfig) -> tuple[list[Manifest] | None, str | None]:
    """Everything checked before anything starts: (the objects to apply, or the one-line problem)."""
    if cfg.state_dir.exists() and not cfg.state_dir.is_dir():
        return None, f"--state-dir {cfg.state_dir} exists and is not a directory"
    holder = StateLock(cfg.state_dir).holder()
    if holder is not None:
        return None, (f"another `newapi dev` (pid {holder}) is using the state directory {cfg.state_dir}; stop it "
                      "first, or give this one its own --state-dir")
    problem = check_ports(cfg.port_uses())
    if problem:
        return None, problem
    if cfg.apply == [Path("config/samples")] and not cfg.apply[0].is_dir():
        return None, ("no config/samples/ here: run `newapi dev` in the repository checkout, or give the YAML to "
                      "apply with --apply DIR (or --no-apply)")
    try:
        manifests = load_manifests(cfg.apply)
    except ManifestError as exc:
        return None, str(exc)
    return manifests, None


def rotate_logs(log_dir: Path) -> None:
    """Keep the previous run's logs as ``*.log.1``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    for path in log_dir.glob("*.log"):
        with contextlib.suppress(OSError):
            os.replace(path, path.with_name(path.name + ".1"))


def _secret_value(secret: dict[str, Any] | None, key: str) -> str | None:
    raw = ((secret or {}).get("data") or {}).get(key)
    if not raw:
        return None
    try:
        return base64.b64decode(str(raw), validate=True).decode().strip() or None
    except (binascii.Error, UnicodeDecodeError):
        return None


def env_file_text(values: dict[str, str]) -> str:
    """The ``<state-dir>/env`` file: ``export NAME='value'`` lines for a POSIX shell."""
    lines = ["# Written by `newapi dev`: load it in another shell with  . .dev/env  (or your --state-dir)."]
    for name, value in values.items():
        lines.append(f"export {name}='{value}'")
    return "\n".join(lines) + "\n"


class Supervisor:
    """Keeps one child (operator, demo upstream) running: restarts it with back-off when it exits."""

    def __init__(self, make: Callable[[], Child], label: str, log_path: Path) -> None:
        self.make = make
        self.label = label
        self.log_path = log_path
        self.child: Child | None = None
        self._task: asyncio.Task[None] | None = None
        self.stopping = False

    async def start(self) -> None:
        self.child = self.make()
        await self.child.start()
        self._task = asyncio.get_running_loop().create_task(self._watch(), name=f"dev-supervise-{self.label}")

    async def _watch(self) -> None:
        failures = 0
        while True:
            assert self.child is not None
            started = time.monotonic()
            code = await self.child.wait()
            if self.stopping:
                return
            failures = failures + 1 if time.monotonic() - started < 60 else 1
            delay = RESTART_BACKOFF[min(failures - 1, len(RESTART_BACKOFF) - 1)]
            say(f"{self.label} exited with code {code}; restarting in {delay:.0f} s. Last lines of "
                f"{self.log_path}:\n{tail(self.log_path, 12)}")
            await asyncio.sleep(delay)
            if self.stopping:
                return
            self.child = self.make()
            await self.child.start()

    async def stop(self, grace: float) -> None:
        self.stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.child is not None:
            await self.child.stop(grace)

    @property
    def pid(self) -> int | None:
        return None if self.child is None else self.child.pid


async def _wait_http_ok(url: str, stop: asyncio.Event, interval: float = 0.1) -> bool:
    import httpx

    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return True
            await asyncio.sleep(interval)
    return False


async def serve(cfg: DevConfig, manifests: list[Manifest]) -> int:
    from newapi_operator.apiserver import LocalAPIServer
    from newapi_operator.crdgen import build_crds

    from .adminrouter import AdminRouter
    from .kube import DevKube, KubeError
    from .launcher import Launcher, PortMap
    from .persist import Snapshotter, load_snapshot, registered_crds, restore

    state = cfg.state_dir.resolve()
    logs = state / "logs"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    supervisors: list[Supervisor] = []
    launcher_ref: list[Any] = []

    def on_signal() -> None:
        if stop.is_set():
            say("stopping at once (second signal): SIGKILL to every child")
            children = [s.child for s in supervisors if s.child is not None]
            for launched in launcher_ref:
                children += [p.child for p in launched.pods.values() if p.child is not None]
            for child in children:
                child.kill()
        else:
            stop.set()
            for supervisor in supervisors:
                supervisor.stopping = True  # exits from now on are expected: no restarts, no reports
            for launched in launcher_ref:
                launched.stopping = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    # 2. The API server and the kept objects.
    server = LocalAPIServer(crds=build_crds(), host=HOST, port=cfg.apiserver_port)
    await server.start()
    builtin_crds = registered_crds(server)
    snapshot_path = state / "apiserver.json"
    try:
        doc = load_snapshot(snapshot_path)
    except ValueError as exc:
        await server.stop()
        say(str(exc))
        return 1
    if doc is not None:
        report = restore(server, doc)
        say(f"restored {report.restored} objects of the previous run from {cfg.state_dir / 'apiserver.json'}")
        for line in report.skipped:
            say(f"  not restored: {line}")
    kubeconfig = server.write_kubeconfig(state / "kubeconfig")
    say(f"local Kubernetes API server at {server.url} (kubeconfig {cfg.state_dir / 'kubeconfig'})")
    snapshots = Snapshotter(server, snapshot_path, builtin_crds, on_error=say)
    snapshots.start()
    kube = DevKube(server.url)

    # 3. Overlays, then the children.
    primary_m = first_of(manifests, "NewAPIInstance")
    key_ms = all_of(manifests, "CustomerKey")
    to_apply, notes = dev_overlay(manifests)
    if cfg.demo:
        to_apply, demo_notes = demo_overlay(to_apply, cfg.demo_url)
        notes += demo_notes

    primary = (primary_m.namespace, primary_m.name) if primary_m else None
    if primary is None:  # --no-apply: the first instance kept from earlier runs gets the configured ports
        kept = await kube.list(API_VERSION, "NewAPIInstance")
        if kept:
            primary = (str(kept[0]["metadata"]["namespace"]), str(kept[0]["metadata"]["name"]))
    ready_gateways: dict[tuple[str, str], dict[str, int]] = {}
    gateway_ready = asyncio.Event()

    def on_ready(key: tuple[str, str], ports: dict[str, int]) -> None:
        ready_gateways[key] = ports
        if primary is None or key == primary:
            gateway_ready.set()

    extra: dict[str, str] = {}
    if cfg.database_url:
        extra["--database-url"] = cfg.database_url
    if cfg.redis_url:
        extra["--redis-url"] = cfg.redis_url
    launcher = Launcher(kube, kubeconfig=kubeconfig, state_dir=state,
                        ports=PortMap(primary, cfg.gateway_port, cfg.admin_port),
                        extra_args=extra, notify=say, on_ready=on_ready, stop_timeout=STOP_TIMEOUT)
    launcher_ref.append(launcher)
    router = AdminRouter(launcher.admin_port)
    await router.start()

    child_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("KUBECONFIG", "NEWAPI_ADMIN_URL"):
        child_env.pop(name, None)
    demo: Supervisor | None = None
    if cfg.demo:
        demo = Supervisor(lambda: Child("demo upstream", [
            sys.executable, "-m", "newapi_gateway.demo_upstream", "--host", HOST, "--port", str(cfg.demo_port),
            "--name", "demo"], log_path=logs / "demo-upstream.log", env=child_env), "demo upstream",
            logs / "demo-upstream.log")
        await demo.start()
        supervisors.append(demo)
    operator = Supervisor(lambda: Child("operator", [
        sys.executable, "-m", "newapi_operator", "operator", "--kubeconfig", str(kubeconfig), "--standalone",
        "--liveness", "none", "--admin-url", router.url_template(), "--usage-refresh", "15",
        "--log-format", "text"], log_path=logs / "operator.log", env=child_env), "operator", logs / "operator.log")
    await operator.start()
    supervisors.append(operator)
    say(f"operator started (pid {operator.pid}; log {cfg.state_dir / 'logs' / 'operator.log'})")
    if demo is not None:
        say(f"demo upstream (NOT a real model: it answers \"echo: <your words>\") at {cfg.demo_url} "
            f"(pid {demo.pid})")
    await launcher.start()

    exit_code = 0
    try:
        if to_apply:
            where = ", ".join(str(p) for p in cfg.apply)
            for m in to_apply:
                await kube.apply(m.obj)
            say(f"applied {len(to_apply)} objects from {where}")
            if notes:
                say("rewrote for local use (the files are unchanged):")
                for line in notes:
                    print(f"    {line}", flush=True)
        if not key_ms:  # --no-apply: show the keys kept from earlier runs
            key_ms = [Manifest(obj, "kept") for obj in await kube.list(API_VERSION, "CustomerKey")]
    except KubeError as exc:
        say(f"cannot apply {exc}; stopping")
        exit_code = 1
        stop.set()

    # 4. Wait until it works, then say where everything is.
    banner = loop.create_task(_announce(cfg, kube, primary, key_ms, gateway_ready, demo is not None, stop))
    await stop.wait()

    # 5. Stop.
    say("stopping: operator, gateways, demo upstream")
    banner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await banner
    await operator.stop(STOP_TIMEOUT)
    await launcher.stop()
    if demo is not None:
        await demo.stop(STOP_TIMEOUT)
    await router.stop()
    await snapshots.stop()
    try:
        snapshots.save()
        saved = f"state kept in {cfg.state_dir}/ (objects: apiserver.json; gateway data: gateways/)"
    except OSError as exc:
        saved = f"could not save the API server's objects: {exc.strerror}"
    await kube.close()
    await server.stop()
    say(f"stopped; {saved}")
    return exit_code


async def _announce(cfg: DevConfig, kube: Any, primary: tuple[str, str] | None, key_ms: list[Manifest],
                    gateway_ready: asyncio.Event, demo: bool, stop: asyncio.Event) -> None:
    """Wait for the sample gateway and keys; write admin-token and env; print the URLs and keys."""
    from .kube import KubeError

    state = cfg.state_dir.resolve()
    hinted = False
    keys: dict[str, str] = {}
    token: str | None = None
    waiting_for: list[str] = []
    while not stop.is_set():
        waiting_for = []
        if not gateway_ready.is_set():
            waiting_for.append("the gateway to be ready")
        try:
            if primary is not None and token is None:
                token = _secret_value(await kube.get("v1", "Secret", primary[0], f"{primary[1]}-admin"), "token")
                if token is None:
                    waiting_for.append(f"the admin token Secret {primary[1]}-admin")
            for m in key_ms:
                if m.ref in keys:
                    continue
                secret = await kube.get("v1", "Secret", m.namespace, f"{m.name}-key")
                value, key_id = _secret_value(secret, "key"), _secret_value(secret, "keyId")
                if value and key_id:
                    keys[m.ref] = value
                else:
                    waiting_for.append(f"the key of {m.ref}")
        except (KubeError, OSError) as exc:
            waiting_for.append(f"the API server ({exc})")
        if not waiting_for:
            break
        if not hinted and time.monotonic() - cfg.started > SLOW_START_HINT:
            hinted = True
            say(f"still waiting for {', '.join(waiting_for)}; see the logs in {cfg.state_dir / 'logs'}/")
        await asyncio.sleep(0.2)
    if stop.is_set():
        return
    if demo:
        await _wait_http_ok(f"{cfg.demo_url}/__demo/health", stop)
    values: dict[str, str] = {"NEWAPI_URL": cfg.gateway_url, "NEWAPI_ADMIN_URL": cfg.admin_url}
    if token is not None:
        path = state / "admin-token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        values["NEWAPI_ADMIN_TOKEN"] = token
    if keys:
        values["NEWAPI_KEY"] = next(iter(keys.values()))
    if demo:
        values["NEWAPI_DEMO_URL"] = cfg.demo_url
    values["NEWAPI_KUBECONFIG"] = str(state / "kubeconfig")
    env_path = state / "env"
    fd = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(env_file_text(values))
    elapsed = time.monotonic() - cfg.started
    sd = cfg.state_dir
    lines = [
        f"ready in {elapsed:.1f} s",
        f"  customer API   {cfg.gateway_url}/v1   (OpenAI- and Anthropic-compatible; GET /quota, /metrics)",
        f"  admin API      {cfg.admin_url}/api/v1/admin   (bearer token in {sd / 'admin-token'})",
    ]
    for ref, value in keys.items():
        lines.append(f"  sample key     {value}   ({ref})")
    lines.append(f"  kubectl        kubectl --kubeconfig {sd / 'kubeconfig'} get newapiinstances,channels,customerkeys")
    if demo:
        lines.append(f"  demo upstream  {cfg.demo_url}   (NOT a real model: answers \"echo: <your words>\")")
    lines.append(f"  in another shell:  . {sd / 'env'}   (exports NEWAPI_URL, NEWAPI_KEY, ...); logs in {sd / 'logs'}/")
    lines.append("Press Ctrl-C to stop; the state stays in " + f"{sd}/ for the next run.")
    say(lines[0])
    for line in lines[1:]:
        print(line, flush=True)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``newapi dev``."""
    cfg = DevConfig.from_args(args)
    manifests, problem = preflight(cfg)
    if problem is not None or manifests is None:
        print(f"{PREFIX} {problem}", file=sys.stderr)
        return 1
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    lock = StateLock(cfg.state_dir)
    if not lock.acquire():
        print(f"{PREFIX} another `newapi dev` is using the state directory {cfg.state_dir}", file=sys.stderr)
        return 1
    try:
        rotate_logs(cfg.state_dir / "logs")
        logging.basicConfig(filename=str(cfg.state_dir / "logs" / "dev.log"), level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
        try:
            return asyncio.run(serve(cfg, manifests))
        except OSError as exc:
            print(f"{PREFIX} {exc}", file=sys.stderr)
            return 1
    finally:
        lock.release()
