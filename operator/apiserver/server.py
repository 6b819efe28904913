"""Running the local API server: an async context manager and a background-thread variant.

The kmock handler (:class:`._kmock_compat.KmockEmulator`) is served by aiohttp's low-level
server directly rather than through ``kmock.Server``: the latter also patches aiohttp's DNS
resolution process-wide while entered (and requires servers to exit in LIFO order), which
would leak into the gateway's own HTTP clients when both run in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from ._kmock_compat import KmockEmulator
from .cel import crd_rule_errors, validate_rules
from .controllers import Controllers
from .errors import ApiError
from .kubeconfig import write_kubeconfig
from .resources import BUILTIN_TYPES, KOPF_PEERING_CRDS, Registry
from .service import ApiService
from .store import Obj, Store

log = logging.getLogger(__name__)

#: The largest request body a real API server accepts.
MAX_BODY = 3 * 1024 * 1024
#: Namespaces a fresh cluster has.
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

_CRD_TYPE = next(t for t in BUILTIN_TYPES if t.plural == "customresourcedefinitions")
_NAMESPACE_TYPE = next(t for t in BUILTIN_TYPES if t.plural == "namespaces")


class LocalAPIServer:
    """A Kubernetes API server on ``host:port`` (port 0: a free one), with ``crds`` registered.

    Usage::

        async with LocalAPIServer(crds=build_crds()) as server:
            server.write_kubeconfig(tmp_path / "kubeconfig")
            ...  # talk to server.url with kubectl, Kopf, kubernetes-asyncio, httpx

    ``history_size`` bounds the watch event history (older resourceVersions answer 410 Gone);
    ``request_log_size`` bounds kmock's request log (``server.emulator`` for assertions and
    scripted reactions); ``bookmark_interval`` is how often watches asking for bookmarks get one.
    """

    def __init__(
        self,
        crds: Iterable[dict[str, Any]] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        history_size: int = 10_000,
        request_log_size: int = 1000,
        bookmark_interval: float = 60.0,
        kopf_peering: bool = True,
    ) -> None:
        self._crds = list(crds)
        self._host = host
        self._port = port
        self._kopf_peering = kopf_peering
        self.store = Store(Registry.with_builtins(), cel=validate_rules, cel_compile=crd_rule_errors,
                           history_size=history_size)
        self.service = ApiService(self.store, bookmark_interval=bookmark_interval)
        self.emulator = KmockEmulator(service=self.service, log_size=request_log_size)
        self.controllers = Controllers(self.store)
        self._runner: web.ServerRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self._bound_port: int | None = None

    # -----------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("the local API server is not running")
        return self._bound_port

    @property
    def host(self) -> str:
        return self._host

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:43123``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def errors(self) -> list[Exception]:
        """Internal errors (HTTP 500s) so far: a test that sees any has found a server bug."""
        return list(self.emulator.errors)

    def write_kubeconfig(self, path: str | os.PathLike[str], *, namespace: str = "default") -> Path:
        """Write a kubeconfig for this server (see :func:`.kubeconfig.write_kubeconfig`)."""
        return write_kubeconfig(path, self.url, namespace=namespace)

    def add_crd(self, crd: dict[str, Any]) -> Obj:
        """Register a CRD manifest as if created over HTTP; raises :class:`ApiError` when invalid."""
        obj, _ = self.store.create(_CRD_TYPE, None, crd)
        return obj

    # -----------------------------------------------------------------------------------------

    def _bootstrap(self) -> None:
        for name in INITIAL_NAMESPACES:
            self.store.create(_NAMESPACE_TYPE, None, {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": name}})
        crds = list(KOPF_PEERING_CRDS) if self._kopf_peering else []
        for crd in [*crds, *self._crds]:
            try:
                self.add_crd(crd)
            except ApiError as exc:
                name = (crd.get("metadata") or {}).get("name", "?")
                raise ValueError(f"CRD {name} cannot be registered: {exc.message}") from exc

    async def start(self) -> None:
        self._bootstrap()
        await self.emulator.__aenter__()
        self._task = asyncio.create_task(self.controllers.run(), name="local-apiserver-controllers")
        loop = asyncio.get_running_loop()

        def make_request(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
            # A real API server accepts bodies up to 3 MiB (aiohttp's default is 1 MiB).
            return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=MAX_BODY)

        server = web.Server(self.emulator, handler_cancellation=True, request_factory=make_request)
        self._runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        address = self._runner.addresses[0]
        self._bound_port = int(address[1])
        log.info("local Kubernetes API server at %s", self.url)

    async def stop(self) -> None:
        self.service.closing = True
        self.store.close_watchers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.emulator.__aexit__(None, None, None)
        self._bound_port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def serve_forever(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set (the ``newapi apiserver`` command)."""
        async with self:
            await stop.wait()


class ThreadedAPIServer:
    """A :class:`LocalAPIServer` on its own event loop in a daemon thread, for synchronous callers.

    ``with ThreadedAPIServer(crds=...) as server: server.url`` -- the server is ready on enter
    and stopped on exit. Interact with it over HTTP only (the store belongs to its thread).
    """

    def __init__(self, crds: Iterable[dict[str, Any]] = (), **kwargs: Any) -> None:
        self._args = (list(crds), kwargs)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.server: LocalAPIServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None, "the server is not running"
        return self.server.url

    def write_kubeconfig(self, path: str | os.PathLike[str], *, namespace: str = "default") -> Path:
        assert self.server is not None, "the server is not running"
        return self.server.write_kubeconfig(path, namespace=namespace)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            crds, kwargs = self._args
            self.server = LocalAPIServer(crds, **kwargs)
            try:
                await self.server.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                raise
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.server.stop()

        with contextlib.suppress(BaseException):
            asyncio.run(main())

    def start(self, timeout: float = 30.0) -> None:
        self._thread = threading.Thread(target=self._run, name="local-apiserver", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the local API server did not start in time")
        if self._error is not None:
            raise self._error

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
