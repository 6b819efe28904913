"""``newapi gateway``: run the data plane, standalone (files) or in a cluster (Kubernetes API)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from .app import build_app
from .credentials import InvalidCredentials, credentials_from_secret_data, parse_credentials_file
from .hooks import Hooks
from .keys import InvalidKeyFile, KeyResolver, StaticKeyResolver, parse_key_file
from .logs import setup_logging
from .proxy import Proxy
from .routing_table import CONFIGMAP_KEY, InvalidRoutingTable, parse_table
from .sources import FilePoller, KubeObjectWatch
from .state import GatewayState
from .tracing import make_tracer
from .upstream import UpstreamClient

log = logging.getLogger("newapi_gateway.main")


@dataclass
class Options:
    routes: str | None = None
    upstream_credentials: str | None = None
    keys: str | None = None
    host: str = "0.0.0.0"
    port: int = 8080
    kube: bool = False
    kubeconfig: str | None = None
    namespace: str = "default"
    instance: str | None = None
    log_level: str = "info"
    log_format: str = "json"
    otel_exporter: str = "none"
    reload_interval: float = 1.0
    upstream_client: str = "lean"
    hooks: Hooks = field(default_factory=Hooks)


class ConfigError(Exception):
    """The command line or a file given on it is unusable; the message says what to fix."""


def options_from_args(args: argparse.Namespace) -> Options:
    names = set(Options.__dataclass_fields__) - {"hooks"}
    return Options(**{k: getattr(args, k) for k in names if hasattr(args, k)})


def run(args: argparse.Namespace) -> int:
    """Entry point of ``newapi gateway``."""
    opts = options_from_args(args)
    setup_logging(opts.log_level, json_logs=opts.log_format == "json")
    try:
        import uvloop

        runner: Callable[..., None] = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    try:
        runner(serve(opts))
    except ConfigError as err:
        print(f"newapi gateway: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise ConfigError(f"cannot read the {what} {path}: {err.strerror}") from None


def load_keys(path: str) -> StaticKeyResolver:
    try:
        return parse_key_file(_read(path, "key file"))
    except InvalidKeyFile as err:
        raise ConfigError(f"{path}: {err}") from None


def _check(opts: Options) -> None:
    if opts.kube:
        if not opts.instance:
            raise ConfigError("--kube needs --instance NAME (the NewAPIInstance whose routes to serve)")
        if opts.routes or opts.upstream_credentials:
            raise ConfigError("--kube reads the routing table from the cluster: drop --routes/--upstream-credentials")
    elif not opts.routes:
        raise ConfigError("give --routes FILE (standalone) or --kube --instance NAME (cluster)")
    if not opts.keys:
        raise ConfigError("give --keys FILE: the static key list (the metering store replaces it later)")


async def serve(opts: Options, started: Callable[[int], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT. ``started(port)`` is called once the listener is bound."""
    _check(opts)
    state = GatewayState()
    assert opts.keys is not None
    keys: KeyResolver = load_keys(opts.keys)
    tracer, provider = make_tracer("console" if opts.otel_exporter == "console" else "none")
    upstream = UpstreamClient("aiohttp" if opts.upstream_client == "aiohttp" else "lean")
    proxy = Proxy(state, keys, upstream, hooks=opts.hooks, tracer=tracer)
    tasks: list[asyncio.Task[None]] = []

    def install_keys(data: bytes) -> bool:
        try:
            resolver = parse_key_file(data)
        except InvalidKeyFile as err:
            state.reject("keys-file", err)
            return False
        proxy.keys = resolver
        log.info("key file loaded", extra={"keys": len(resolver)})
        return True

    if opts.kube:
        tasks.extend(await _kube_sources(opts, state))
    else:
        assert opts.routes is not None
        polls: list[FilePoller] = []
        if opts.upstream_credentials:  # credentials first: the first table then compiles with them
            creds = FilePoller(opts.upstream_credentials, lambda data: _install_credentials_file(state, data),
                               opts.reload_interval)
            if not creds.check():
                raise ConfigError(f"{opts.upstream_credentials}: no valid upstream credentials (see the error above)")
            polls.append(creds)
        routes = FilePoller(opts.routes, lambda data: _install_table(state, data, "file"), opts.reload_interval)
        if not routes.check() or state.snapshot is None:
            raise ConfigError(f"{opts.routes}: no valid routing table (see the error above)")
        polls.append(routes)
        key_poll = FilePoller(opts.keys, install_keys, opts.reload_interval)
        key_poll.check()
        polls.append(key_poll)
        tasks.extend(asyncio.create_task(p.run()) for p in polls)

    await upstream.start()
    app = build_app(proxy)
    app_runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=30.0)
    await app_runner.setup()
    site = web.TCPSite(app_runner, opts.host, opts.port, backlog=2048, reuse_address=True)
    await site.start()
    port = _bound_port(site, opts.port)
    log.info("gateway listening", extra={"host": opts.host, "port": port, "mode": "kube" if opts.kube else "file"})
    if started is not None:
        started(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("gateway stopping: draining requests")
        for t in tasks:
            t.cancel()
        await app_runner.cleanup()
        await upstream.close()
        if provider is not None:
            provider.shutdown()


def _bound_port(site: web.TCPSite, default: int) -> int:
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    for s in sockets:
        return int(s.getsockname()[1])
    return default


def _install_table(state: GatewayState, data: bytes, source: str) -> bool:
    try:
        table = parse_table(data)
    except InvalidRoutingTable as err:
        state.reject(source, err)
        return False
    if state.snapshot is not None and state.table is not None and state.table.version == table.version:
        return True
    state.set_table(table, source)
    return True


def _install_credentials_file(state: GatewayState, data: bytes) -> bool:
    try:
        creds = parse_credentials_file(data)
    except InvalidCredentials as err:
        state.reject("credentials-file", err)
        return False
    state.set_credentials(creds, "credentials-file")
    return True


async def _kube_sources(opts: Options, state: GatewayState) -> list[asyncio.Task[None]]:
    from kubernetes_asyncio import client, config

    try:
        if opts.kubeconfig or os.environ.get("KUBECONFIG") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            await config.load_kube_config(config_file=opts.kubeconfig)
        else:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
    except Exception as err:
        raise ConfigError(f"--kube: cannot load the Kubernetes client configuration: {err}") from None
    api = client.CoreV1Api(client.ApiClient())
    instance = opts.instance

    def on_routes(data: dict[str, str] | None) -> None:
        if data is None:
            log.warning("routes ConfigMap not found; keeping the current table",
                        extra={"configmap": f"{instance}-routes"})
            return
        raw = data.get(CONFIGMAP_KEY)
        if raw is None:
            state.reject("kubernetes", InvalidRoutingTable([f"ConfigMap {instance}-routes has no key {CONFIGMAP_KEY}"]))
            return
        _install_table(state, raw.encode(), "kubernetes")

    def on_secret(data: dict[str, str] | None) -> None:
        try:
            creds = credentials_from_secret_data(data)
        except InvalidCredentials as err:
            state.reject("kubernetes-secret", err)
            return
        state.set_credentials(creds, "kubernetes-secret")

    watches = [
        KubeObjectWatch(api, "configmap", opts.namespace, f"{instance}-routes", on_routes),
        KubeObjectWatch(api, "secret", opts.namespace, f"{instance}-upstream", on_secret),
    ]
    return [asyncio.create_task(w.run()) for w in watches]
