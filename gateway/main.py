"""``newapi gateway``: run the data plane, standalone (files) or in a cluster (Kubernetes API)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from .admin import AdminExtension, AdminToken, AdminTokenError, KeyMeta, build_admin_app, key_meta_for, token_from
from .app import build_app
from .compliance.admin_api import ProbeTargets
from .compliance.aup_policy import AupPolicyError
from .compliance.runtime import CompliancePlane
from .credentials import InvalidCredentials, credentials_from_secret_data, parse_credentials_file
from .gctune import tune_gc
from .hooks import Hooks
from .keys import InvalidKeyFile, KeyResolver, StaticKeyResolver, parse_key_file
from .logs import setup_logging
from .metering import InvalidStateConfig, Metering, resolve_state
from .pricing import HoldPolicy
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
    database_url: str | None = None
    redis_url: str | None = None
    state_dir: str = "."
    hold_ttl: float = 600.0
    default_max_tokens: int = 4096
    admin_port: int | None = None
    admin_host: str | None = None
    admin_token_file: str | None = None
    geoip_db: str | None = None
    audit_retention_interval: float = 3600.0
    hooks: Hooks = field(default_factory=Hooks)
    #: more admin routes (e.g. compliance), served behind the admin token and in the OpenAPI document
    admin_extensions: list[AdminExtension] = field(default_factory=list)


class ConfigError(Exception):
    """The command line or a file given on it is unusable; the message says what to fix."""


def options_from_args(args: argparse.Namespace) -> Options:
    names = set(Options.__dataclass_fields__) - {"hooks", "admin_extensions"}
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
    if opts.keys:
        if opts.database_url or opts.redis_url:
            raise ConfigError("--keys is the pass-through mode without a store: drop --keys to use "
                              "--database-url/--redis-url (keys then come from the store's admin API)")
        if opts.admin_port is not None:
            raise ConfigError("the admin API manages keys in the store: drop --keys to serve it")
    if opts.hold_ttl <= 0:
        raise ConfigError(f"--hold-ttl must be a positive number of seconds, got {opts.hold_ttl}")
    if opts.default_max_tokens < 1:
        raise ConfigError(f"--default-max-tokens must be at least 1, got {opts.default_max_tokens}")
    if opts.audit_retention_interval <= 0:
        raise ConfigError(f"--audit-retention-interval must be a positive number of seconds, "
                          f"got {opts.audit_retention_interval}")


def _admin_token(opts: Options) -> AdminToken | None:
    if opts.admin_port is None:
        return None
    try:
        return token_from(opts.admin_token_file)
    except AdminTokenError as err:
        raise ConfigError(str(err)) from None


async def _open_metering(opts: Options) -> Metering:
    try:
        config = resolve_state(opts.database_url, opts.redis_url, opts.state_dir)
    except InvalidStateConfig as err:
        raise ConfigError(str(err)) from None
    if config.sqlite_path is not None:
        folder = os.path.dirname(config.sqlite_path) or "."
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create the state directory {folder}: {err.strerror}") from None
    metering = Metering(config, hold_ttl=opts.hold_ttl,
                        policy=HoldPolicy(default_max_output_tokens=opts.default_max_tokens))
    try:
        await metering.open()
    except Exception as err:
        with contextlib.suppress(Exception):
            await metering.close(drain_timeout=0)
        raise ConfigError(f"cannot open the state store ({config.describe()['database']}): "
                          f"{type(err).__name__}: {err}") from None
    return metering


def _compliance_plane(opts: Options) -> CompliancePlane:
    try:
        return CompliancePlane(geoip_database=opts.geoip_db)
    except AupPolicyError as err:
        raise ConfigError(f"the AUP policy files are unusable: {err}") from None


async def serve(opts: Options, started: Callable[[int], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT. ``started(port)`` is called once the listener is bound."""
    _check(opts)
    state = GatewayState()
    token = _admin_token(opts)
    metering: Metering | None = None
    keys: KeyResolver
    base = opts.hooks.copy()
    extensions = list(opts.admin_extensions)
    compliance: CompliancePlane | None = None
    if opts.keys:
        keys = load_keys(opts.keys)
        hooks = base
        log.warning("pass-through mode (--keys): no store, no metering and NO compliance plane (geo blocking, AUP, "
                    "disclosure page, audit log); for development and benchmarks only, never for customers")
    else:
        compliance = _compliance_plane(opts)
        metering = await _open_metering(opts)
        keys = metering.resolver
        audit = compliance.open_audit(
            metering.store, lambda: state.table.policy.audit.retention_days if state.table is not None else None,
            retention_interval=opts.audit_retention_interval)
        metering.meter.audit = audit.settled_row  # the audit row commits with the debit
        compliance.install(base)  # before the metering layer's admission: a refusal costs no rate budget
        hooks = metering.hooks(base)
        config = metering.config
        extensions.append(compliance.admin(state, ProbeTargets(config.dsn, config.sqlite_path, config.redis_url)))
    try:
        await _serve(opts, state, keys, hooks, metering, token, started, compliance, extensions)
    finally:
        if compliance is not None:
            await compliance.close()
        if metering is not None:
            await metering.close()


async def _serve(
    opts: Options,
    state: GatewayState,
    keys: KeyResolver,
    hooks: Hooks,
    metering: Metering | None,
    token: AdminToken | None,
    started: Callable[[int], None] | None,
    compliance: CompliancePlane | None,
    extensions: list[AdminExtension],
) -> None:
    tracer, provider = make_tracer("console" if opts.otel_exporter == "console" else "none")
    upstream = UpstreamClient("aiohttp" if opts.upstream_client == "aiohttp" else "lean")
    proxy = Proxy(state, keys, upstream, hooks=hooks, tracer=tracer)
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

    def install_table(data: bytes, source: str) -> bool:
        return _install_table(state, data, source, compliance)

    if opts.kube:
        tasks.extend(await _kube_sources(opts, state, install_table))
    else:
        assert opts.routes is not None
        polls: list[FilePoller] = []
        if opts.upstream_credentials:  # credentials first: the first table then compiles with them
            creds = FilePoller(opts.upstream_credentials, lambda data: _install_credentials_file(state, data),
                               opts.reload_interval)
            if not creds.check():
                raise ConfigError(f"{opts.upstream_credentials}: no valid upstream credentials (see the error above)")
            polls.append(creds)
        routes = FilePoller(opts.routes, lambda data: install_table(data, "file"), opts.reload_interval)
        if not routes.check() or state.snapshot is None:
            raise ConfigError(f"{opts.routes}: no valid routing table (see the error above)")
        polls.append(routes)
        if opts.keys:  # the pass-through mode's static keys (else the store resolves keys)
            key_poll = FilePoller(opts.keys, install_keys, opts.reload_interval)
            key_poll.check()
            polls.append(key_poll)
        tasks.extend(asyncio.create_task(p.run()) for p in polls)

    await upstream.start()
    public = compliance.routes(state) if compliance is not None else []  # GET /legal/llm-providers
    if metering is not None:
        quota = metering.quota_endpoint(state)
        app = build_app(proxy, extra_routes=[*public, ("GET", "/quota", quota), ("GET", "/v1/quota", quota)],
                        readiness=metering.readiness)
    else:
        app = build_app(proxy, extra_routes=public)
    app_runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=30.0)
    await app_runner.setup()
    site = web.TCPSite(app_runner, opts.host, opts.port, backlog=2048, reuse_address=True)
    await site.start()
    port = _bound_port(site, opts.port)
    log.info("gateway listening", extra={"host": opts.host, "port": port, "mode": "kube" if opts.kube else "file",
                                         "keys": "file" if opts.keys else "store"})
    admin_runner: web.AppRunner | None = None
    meta: KeyMeta | None = None
    if token is not None and metering is not None and opts.admin_port is not None:
        meta = key_meta_for(metering.store)
        admin_app = build_admin_app(metering.store, token, meta, extensions)
        admin_runner = web.AppRunner(admin_app, access_log=None, handle_signals=False, shutdown_timeout=10.0)
        await admin_runner.setup()
        admin_host = opts.admin_host or opts.host
        admin_site = web.TCPSite(admin_runner, admin_host, opts.admin_port, reuse_address=True)
        await admin_site.start()
        log.info("admin API listening", extra={"host": admin_host, "port": _bound_port(admin_site, opts.admin_port)})
    tune_gc()
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
        if admin_runner is not None:
            await admin_runner.cleanup()
        if meta is not None:
            await meta.close()
        await upstream.close()
        if provider is not None:
            provider.shutdown()


def _bound_port(site: web.TCPSite, default: int) -> int:
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    for s in sockets:
        return int(s.getsockname()[1])
    return default


def _install_table(state: GatewayState, data: bytes, source: str, compliance: CompliancePlane | None = None) -> bool:
    try:
        table = parse_table(data)
    except InvalidRoutingTable as err:
        state.reject(source, err)
        return False
    if state.snapshot is not None and state.table is not None and state.table.version == table.version:
        return True
    if compliance is not None:  # a table whose compliance settings do not compile is refused like an invalid one
        problem = compliance.accept(table)
        if problem is not None:
            state.reject(source, problem)
            return False
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


async def _kube_sources(
    opts: Options, state: GatewayState, install_table: Callable[[bytes, str], bool]
) -> list[asyncio.Task[None]]:
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
        install_table(raw.encode(), "kubernetes")

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
