"""Fixtures for the operator tests: a cluster, the real operator as a subprocess, throwaway namespaces.

``cluster`` (session) is the local API server (:class:`ThreadedAPIServer` with our CRDs, CEL
validation, watches, garbage collection and Kopf's peering CRDs) unless ``NEWAPI_TEST_KUBECONFIG``
names a real cluster's kubeconfig; then that cluster (our CRDs and Kopf's peering CRDs are
installed when missing). Tests talk to it over HTTP only.

The operator runs as a real subprocess, ``newapi operator --kubeconfig ... --log-format json``
(the same command as in a pod): ``shared_operator`` (session, ``--standalone``) serves every
namespace named ``opt-*``; tests that restart, kill, double or configure the operator start
their own :class:`OperatorProcess` limited to their own ``opd-*`` namespace. The emulator and
the operator run concurrently, so tests poll for outcomes (``wait_for``) rather than sleep.

Emulator differences a test relies on are marked in the test (``cluster.real``): no controller
sets a Deployment's status there (tests set ``readyReplicas`` the way the deployment controller
would), and it cannot run pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from newapi_operator.apiserver import ThreadedAPIServer
from newapi_operator.apiserver.resources import KOPF_PEERING_CRDS
from newapi_operator.controller.kube import ApiError, KubeClient
from newapi_operator.crdgen import build_crds

REAL_KUBECONFIG = os.environ.get("NEWAPI_TEST_KUBECONFIG")
NEWAPI = str(Path(sys.executable).parent / "newapi")
API = "newapi.openova.io/v1alpha1"

T = TypeVar("T")


@dataclass
class Cluster:
    kubeconfig: Path
    real: bool
    server: ThreadedAPIServer | None = None


def _run(coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine in a private loop (session fixtures are synchronous)."""
    from tests.services import run_async

    result: T = run_async(coro_factory)
    return result


async def _install_crds(kubeconfig: str) -> None:
    client = await KubeClient.connect(kubeconfig)
    try:
        for crd in [*build_crds(), *KOPF_PEERING_CRDS]:
            name = crd["metadata"]["name"]
            if await client.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, name) is None:
                await client.create(crd)
        for crd in build_crds():  # wait until served
            group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
            for _ in range(100):
                if await client.served(group, "v1alpha1", plural):
                    break
                await asyncio.sleep(0.1)
    finally:
        await client.close()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if REAL_KUBECONFIG:
        _run(lambda: _install_crds(REAL_KUBECONFIG))
        yield Cluster(Path(REAL_KUBECONFIG), real=True)
        return
    with ThreadedAPIServer(crds=build_crds(), history_size=50_000, request_log_size=100) as server:
        kubeconfig = server.write_kubeconfig(tmp_path_factory.mktemp("cluster") / "kubeconfig")
        yield Cluster(kubeconfig, real=False, server=server)


# ------------------------------------------------------------------------------------------------
# The operator process
# ------------------------------------------------------------------------------------------------


class OperatorProcess:
    """``newapi operator`` as a child process with its JSON log in a file."""

    def __init__(self, cluster: Cluster, log_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.cluster = cluster
        self.log_path = log_path
        self.args = list(args)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [NEWAPI, "operator", "--kubeconfig", str(self.cluster.kubeconfig), "--log-format", "json",
                 *([] if any(a.startswith("--liveness") for a in self.args) else ["--liveness", "none"]),
                 *self.args],
                stdout=log, stderr=subprocess.STDOUT, env=self.env,
            )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait (Kopf exits gracefully: leaves the peering, stops watches)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: a crash, mid-whatever."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        if not self.log_path.exists():
            return out
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict):
                    out.append(doc)
        return out

    def messages(self) -> list[str]:
        return [str(d.get("message", "")) for d in self.lines()]

    def text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def drained(self, queue: str) -> dict[str, Any] | None:
        """The last 'queue drained' log record of ``queue``."""
        found = [d for d in self.lines() if d.get("message") == "queue drained" and d.get("queue") == queue]
        return found[-1] if found else None

    def assert_healthy(self) -> None:
        errors = [d for d in self.lines() if d.get("level") in ("error", "critical")]
        assert not errors, f"operator logged errors: {errors[:3]}"


@pytest.fixture(scope="session")
def shared_operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """One operator for all ``opt-*`` namespaces (standalone)."""
    log = tmp_path_factory.mktemp("operator") / "shared-operator.log"
    op = OperatorProcess(cluster, log, "--standalone", "--namespace", "opt-*").start()
    try:
        yield op
    finally:
        op.stop()
        print(f"shared operator log: {log}")


@pytest.fixture
def start_operator(cluster: Cluster, tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """A factory for a test's own operator processes (stopped when the test ends)."""
    started: list[OperatorProcess] = []

    def start(*args: str, name: str = "operator", env: dict[str, str] | None = None) -> OperatorProcess:
        op = OperatorProcess(cluster, tmp_path / f"{name}-{len(started)}.log", *args, env=env).start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()


# ------------------------------------------------------------------------------------------------
# Talking to the cluster
# ------------------------------------------------------------------------------------------------


@pytest.fixture
async def kube(cluster: Cluster) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(str(cluster.kubeconfig))
    try:
        yield client
    finally:
        await client.close()


async def _namespace(kube: KubeClient, prefix: str) -> AsyncIterator[str]:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield name
    finally:
        with contextlib.suppress(ApiError):
            await kube.delete("v1", "Namespace", None, name)


@pytest.fixture
async def ns(kube: KubeClient, shared_operator: OperatorProcess) -> AsyncIterator[str]:
    """A throwaway namespace served by the shared operator."""
    async for name in _namespace(kube, "opt"):
        yield name
    assert shared_operator.running, f"the shared operator died; log: {shared_operator.log_path}"


@pytest.fixture
async def own_ns(kube: KubeClient) -> AsyncIterator[str]:
    """A throwaway namespace for a test's own operator (not served by the shared one)."""
    async for name in _namespace(kube, "opd"):
        yield name


async def wait_for(probe: Callable[[], Awaitable[T]], seconds: float = 30.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns a truthy value without raising AssertionError; return that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    last: BaseException | None = None
    while True:
        try:
            value = await probe()
            if value:
                return value
        except AssertionError as exc:
            last = exc
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f}s waiting for {what}: {last}")
        await asyncio.sleep(0.1)


async def apply_all(kube: KubeClient, namespace: str, *objects: dict[str, Any]) -> list[dict[str, Any]]:
    """Create the objects in ``namespace`` (what ``kubectl apply`` of new objects does)."""
    out = []
    for obj in objects:
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
        out.append(await kube.create(obj))
    return out


async def events_for(kube: KubeClient, namespace: str, name: str) -> list[dict[str, Any]]:
    return [e for e in await kube.list("v1", "Event", namespace) if (e.get("involvedObject") or {}).get("name") == name]


def conditions(obj: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"])
            for c in ((obj or {}).get("status") or {}).get("conditions") or []}


#: Everything the operator reads or writes in a namespace (for write counting).
WATCHED_KINDS = (
    ("v1", "ServiceAccount"), ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"),
    ("apps/v1", "Deployment"), ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"), ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"), ("policy/v1", "PodDisruptionBudget"),
    (API, "NewAPIInstance"), (API, "Channel"), (API, "CustomerKey"), ("v1", "Event"),
)


#: Kinds whose status other controllers write on a real cluster: compared by generation (spec writes).
STATUS_BY_OTHERS = frozenset({"Deployment", "Ingress", "PodDisruptionBudget"})


async def versions(kube: KubeClient, namespace: str) -> dict[str, str]:
    """``kind/name -> resourceVersion`` of everything the operator could write in the namespace.

    On a real cluster the deployment, ingress and disruption controllers write the status of our
    children, and kubelets post Events: those kinds are compared by ``generation`` (spec writes)
    and only the operator's own Events count.
    """
    out: dict[str, str] = {}
    for api_version, kind in WATCHED_KINDS:
        for obj in await kube.list(api_version, kind, namespace):
            meta = obj["metadata"]
            if kind == "Event" and (obj.get("reportingComponent") or (obj.get("source") or {}).get("component")) \
                    != "newapi-operator":
                continue
            stamp = f"g{meta.get('generation')}" if kind in STATUS_BY_OTHERS else meta["resourceVersion"]
            out[f"{kind}/{meta['name']}"] = stamp
    return out


def free_port() -> int:
    from tests.services import free_port as fp

    return fp()


def monotonic() -> float:
    return time.monotonic()


# ------------------------------------------------------------------------------------------------
# A real gateway with its admin API (embedded state), for CustomerKeys
# ------------------------------------------------------------------------------------------------

#: The tiers of the gateway's routing table in the CustomerKey tests (as objects.TIERS).
GATEWAY_TABLE: dict[str, Any] = {
    "schemaVersion": 1,
    "instance": "gw",
    "channels": [{"name": "local", "type": "vllm", "endpoint": "http://127.0.0.1:9/v1", "models": ["qwen3-32b"],
                  "attestation": {"kind": "in-cluster", "owner": "tests"}}],
    "policy": {"tiers": {"free": {"free": True, "dailyRequestQuota": 10}, "pro": {"dailyRequestQuota": 1000},
                         "enterprise": {"unlimitedCredit": True}}},
}


class GatewayProcess:
    """``newapi gateway`` with ``--admin-port`` on embedded SQLite state in a temporary directory."""

    def __init__(self, workdir: Path, token: str) -> None:
        self.workdir = workdir
        self.token = token
        self.port = free_port()
        self.admin_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> GatewayProcess:
        import httpx

        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "routes.json").write_text(json.dumps(GATEWAY_TABLE))
        (self.workdir / "admin-token").write_text(self.token)
        log = (self.workdir / "gateway.log").open("ab")
        self.proc = subprocess.Popen(
            [NEWAPI, "gateway", "--routes", str(self.workdir / "routes.json"), "--host", "127.0.0.1",
             "--port", str(self.port), "--admin-port", str(self.admin_port),
             "--admin-token-file", str(self.workdir / "admin-token"), "--state-dir", str(self.workdir),
             "--log-format", "json", "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited: {(self.workdir / 'gateway.log').read_text()[-2000:]}")
            try:
                rsp = httpx.get(f"{self.admin_url}/api/v1/admin/openapi.json",
                                headers={"Authorization": f"Bearer {self.token}"}, timeout=2)
                if rsp.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the gateway's admin API did not come up within 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("gateway"), token=f"admin-{uuid.uuid4().hex}").start()
    try:
        yield gw
    finally:
        gw.stop()
