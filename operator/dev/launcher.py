"""The local launcher: what the kubelet and the Deployment controller would do for gateway Deployments.

It watches the Deployments the operator renders (label ``app.kubernetes.io/managed-by=newapi-operator``,
owned by a NewAPIInstance) through the API with kubernetes-asyncio, and for each one runs ONE
real ``newapi gateway`` process from the pod template (see :mod:`.podspec`), so the gateway reads
its routing ConfigMap and upstream Secret through the API exactly as in a cluster. It

* restarts the process when the pod template changes (not when routes change: those hot-reload);
* restarts it when it exits (1 s, doubling up to 30 s, as a kubelet's back-off);
* stops it when the Deployment goes away;
* probes its readiness endpoint and writes the Deployment's status (``replicas``,
  ``readyReplicas``, ``availableReplicas``, ``conditions``) through the ``/status`` subresource,
  so the operator's view of its gateways is realistic.

Ports: the sample ("primary") instance gets ``--gateway-port``/``--admin-port``; any other
instance gets free ports, printed when its gateway starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from .kube import DevKube
from .podspec import (
    PodPlan,
    PodPlanError,
    container_ports,
    decode_secret_data,
    host_environment,
    plan_pod,
    pod_name,
    resolve_env,
    template_hash,
    volume_files,
)
from .ports import free_port
from .processes import Child, tail

log = logging.getLogger("newapi_operator.dev.launcher")

Obj = dict[str, Any]
Key = tuple[str, str]
Data = dict[str, str] | None

MANAGED_SELECTOR = "app.kubernetes.io/managed-by=newapi-operator"
OWNER_KIND = "NewAPIInstance"
#: Back-off between restarts of a process that exited (seconds).
RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
#: Readiness probe interval while the process is starting (seconds).
STARTUP_PROBE_INTERVAL = 0.2
#: Upper bound of the readiness probe interval once ready (seconds).
MAX_PROBE_INTERVAL = 2.0


def is_gateway_deployment(obj: Obj) -> bool:
    """A Deployment the operator rendered for a NewAPIInstance."""
    meta = obj.get("metadata") or {}
    if (meta.get("labels") or {}).get("app.kubernetes.io/managed-by") != "newapi-operator":
        return False
    return any(ref.get("kind") == OWNER_KIND for ref in meta.get("ownerReferences") or [])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment_status(deployment: Obj, *, running: bool, ready: bool, message: str,
                      previous: Obj | None = None, now: str | None = None) -> Obj:
    """The Deployment status a real controller would report for one local "pod" (pure).

    ``previous`` is the current status (condition transition times are kept while a condition's
    status does not change). Zero counts are absent, as on a real server.
    """
    now = now or _now()
    wanted = int((deployment.get("spec") or {}).get("replicas", 1) or 0)
    count = 1 if running else 0
    ready_count = 1 if ready else 0
    old = {c.get("type"): c for c in (previous or {}).get("conditions") or []}

    def cond(ctype: str, status: str, reason: str, text: str) -> Obj:
        before = old.get(ctype) or {}
        since = before.get("lastTransitionTime") if before.get("status") == status else now
        return {"type": ctype, "status": status, "reason": reason, "message": text,
                "lastUpdateTime": now if before.get("message") != text or not before else before.get("lastUpdateTime"),
                "lastTransitionTime": since or now}

    available = ready_count >= 1
    status: Obj = {
        "observedGeneration": (deployment.get("metadata") or {}).get("generation"),
        "replicas": count or None,
        "updatedReplicas": count or None,
        "readyReplicas": ready_count or None,
        "availableReplicas": ready_count or None,
        "unavailableReplicas": (wanted - ready_count) if wanted > ready_count else None,
        "conditions": [
            cond("Available", "True" if available else "False",
                 "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                 "Deployment has minimum availability." if available else "Deployment does not have minimum "
                 f"availability: {message}"),
            cond("Progressing", "True", "NewReplicaSetAvailable" if available else "ReplicaSetUpdated",
                 f"newapi dev runs one local process for this Deployment: {message}"),
        ],
    }
    return status


class PortMap:
    """Local ports of each instance's gateway: the primary instance gets the configured ones."""

    def __init__(self, primary: Key | None, gateway_port: int, admin_port: int) -> None:
        self.primary = primary
        self.gateway_port = gateway_port
        self.admin_port = admin_port
        self._assigned: dict[Key, dict[str, int]] = {}

    def ports(self, key: Key, names: list[str]) -> dict[str, int]:
        """Local ports for the container port names of ``key``'s gateway (stable for the run)."""
        if self.primary is None:
            self.primary = key
        current = self._assigned.setdefault(key, {})
        for name in names:
            if name in current:
                continue
            if key == self.primary and name == "http":
                current[name] = self.gateway_port
            elif key == self.primary and name == "admin":
                current[name] = self.admin_port
            else:
                current[name] = free_port()
        return dict(current)


@dataclass
class LocalPod:
    """The one local process of a gateway Deployment."""

    key: Key
    deployment: Obj
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    removed: bool = False
    plan: PodPlan | None = None
    child: Child | None = None
    ready: bool = False
    restarts: int = 0
    task: asyncio.Task[None] | None = None
    last_status: Obj | None = None
    env: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    status_signature: tuple[Any, ...] | None = None
    status_message: str = "the gateway process is starting"

    @property
    def label(self) -> str:
        return f"{self.key[0]}/{self.key[1]}"


Notify = Callable[[str], None]


class Launcher:
    """See the module docstring. ``notify`` prints one line for people; ``on_ready(key, ports)`` fires on readiness."""

    def __init__(
        self,
        kube: DevKube,
        *,
        kubeconfig: Path,
        state_dir: Path,
        ports: PortMap,
        extra_args: Mapping[str, str] | None = None,
        notify: Notify = print,
        on_ready: Callable[[Key, dict[str, int]], None] | None = None,
        python: str | None = None,
        environ: Mapping[str, str] | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        import sys

        self.kube = kube
        self.kubeconfig = kubeconfig
        self.state_dir = state_dir
        self.port_map = ports
        self.extra_args = dict(extra_args or {})
        self.notify = notify
        self.on_ready = on_ready
        self.python = python or sys.executable
        self.environ = dict(environ if environ is not None else os.environ)
        self.stop_timeout = stop_timeout
        self.pods: dict[Key, LocalPod] = {}
        self._http: aiohttp.ClientSession | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.lists = 0
        #: Set when newapi dev stops: processes that exit are no longer restarted or reported.
        self.stopping = False

    # -- queries ----------------------------------------------------------------------------------

    def admin_port(self, namespace: str, name: str) -> int | None:
        """The local admin port of an instance's gateway while its process runs (the admin router)."""
        pod = self.pods.get((namespace, name))
        if pod is None or pod.plan is None or pod.child is None or not pod.child.running:
            return None
        return pod.plan.ports.get("admin")

    def pids(self) -> list[int]:
        return [p.child.pid for p in self.pods.values() if p.child is not None and p.child.pid and p.child.running]

    def log_path(self, key: Key) -> Path:
        return self.state_dir / "logs" / f"gateway-{key[0]}-{key[1]}.log"

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        self._watch_task = asyncio.get_running_loop().create_task(self._watch(), name="dev-launcher-watch")

    async def stop(self) -> None:
        """Stop watching and stop every gateway process (SIGTERM, then SIGKILL after the timeout)."""
        self.stopping = True
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        pods = list(self.pods.values())
        for pod in pods:
            pod.removed = True
            if pod.task is not None:
                pod.task.cancel()
        for pod in pods:
            if pod.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await pod.task
        await asyncio.gather(*(p.child.stop(self.stop_timeout) for p in pods if p.child is not None))
        if self._http is not None:
            await self._http.close()

    # -- the watch --------------------------------------------------------------------------------

    async def _watch(self) -> None:
        from kubernetes_asyncio import client, config, watch
        from kubernetes_asyncio.client.exceptions import ApiException

        api_client = await config.new_client_from_config(config_file=str(self.kubeconfig))
        apps = client.AppsV1Api(api_client)
        backoff = 0.5
        try:
            while True:
                try:
                    # Raw JSON (not the typed models) so list items and watch events compare equal.
                    rsp: Any = await apps.list_deployment_for_all_namespaces(label_selector=MANAGED_SELECTOR,
                                                                             _preload_content=False)
                    listed = json.loads(await rsp.read())
                    self.lists += 1
                    version = (listed.get("metadata") or {}).get("resourceVersion")
                    seen: set[Key] = set()
                    for raw in listed.get("items") or []:
                        seen.add(self._observe(raw))
                    for key in list(self.pods):
                        if key not in seen:
                            self._forget(key)
                    backoff = 0.5
                    while True:
                        w = watch.Watch()
                        try:
                            async for event in w.stream(apps.list_deployment_for_all_namespaces,
                                                        label_selector=MANAGED_SELECTOR, resource_version=version,
                                                        timeout_seconds=300, allow_watch_bookmarks=True):
                                raw = event["raw_object"]
                                version = (raw.get("metadata") or {}).get("resourceVersion", version)
                                if event["type"] in ("ADDED", "MODIFIED"):
                                    self._observe(raw)
                                elif event["type"] == "DELETED":
                                    meta = raw.get("metadata") or {}
                                    self._forget((str(meta.get("namespace")), str(meta.get("name"))))
                        finally:
                            await w.close()
                except asyncio.CancelledError:
                    raise
                except ApiException as err:
                    if err.status != 410:
                        log.warning("deployment watch: API error %s; retrying", err.status)
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 10.0)
                except Exception as err:  # a broken connection: list and watch again
                    log.warning("deployment watch failed (%s: %s); retrying", type(err).__name__, err)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
        finally:
            await api_client.close()

    def _observe(self, raw: Obj) -> Key:
        meta = raw.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if not is_gateway_deployment(raw) or meta.get("deletionTimestamp"):
            if key in self.pods:
                self._forget(key)
            return key
        pod = self.pods.get(key)
        if pod is None:
            pod = self.pods[key] = LocalPod(key, raw)
            pod.task = asyncio.get_running_loop().create_task(self._run_pod(pod), name=f"dev-pod-{key[0]}-{key[1]}")
            return key
        before = pod.deployment
        pod.deployment = raw
        if template_hash(raw) != template_hash(before):
            pod.changed.set()
        elif (raw.get("metadata") or {}).get("generation") != (before.get("metadata") or {}).get("generation"):
            # e.g. spec.replicas changed: same process, a new observedGeneration.
            running = pod.child is not None and pod.child.running
            asyncio.get_running_loop().create_task(
                self._set_status(pod, running=running, ready=pod.ready, message=pod.status_message))
        return key

    def _forget(self, key: Key) -> None:
        pod = self.pods.get(key)
        if pod is None:
            return
        pod.removed = True
        pod.changed.set()

    # -- one pod ----------------------------------------------------------------------------------

    async def _run_pod(self, pod: LocalPod) -> None:
        try:
            await self._pod_loop(pod)
        finally:
            if pod.removed and self.pods.get(pod.key) is pod:
                del self.pods[pod.key]

    async def _pod_loop(self, pod: LocalPod) -> None:
        failures = 0
        while not pod.removed:
            pod.changed.clear()
            deployment = pod.deployment
            plan = await self._prepare(pod, deployment)
            if plan is None:  # the reason is in the status; retry on a change or in a while
                await self._wait_changed(pod, 2.0)
                continue
            pod.plan = plan
            child = Child(f"gateway {pod.label}", plan.argv, log_path=self.log_path(pod.key),
                          env=self._env_of(pod, plan), cwd=plan.cwd)
            pod.child = child
            pod.ready = False
            await child.start()
            ports = ", ".join(f"{name} 127.0.0.1:{port}" for name, port in sorted(plan.ports.items())
                              if not name.isdigit())
            self.notify(f"gateway {pod.label}: started (pid {child.pid}; {ports}; log {self.log_path(pod.key)})")
            await self._set_status(pod, running=True, ready=False, message="the gateway process is starting")
            outcome = await self._supervise(pod, child, plan)
            if outcome == "changed":
                if pod.removed:
                    self.notify(f"gateway {pod.label}: Deployment deleted; stopping")
                else:
                    self.notify(f"gateway {pod.label}: pod template changed; restarting")
                await child.stop(self.stop_timeout)
                pod.ready = False
                failures = 0
                continue
            if self.stopping:
                return
            code = child.proc.returncode if child.proc is not None else None
            failures = failures + 1 if pod.ready is False else 1
            pod.ready = False
            pod.restarts += 1
            delay = RESTART_BACKOFF[min(failures - 1, len(RESTART_BACKOFF) - 1)]
            self.notify(f"gateway {pod.label}: exited with code {code}; restarting in {delay:.0f} s. "
                        f"Last lines of {self.log_path(pod.key)}:\n{tail(self.log_path(pod.key), 8)}")
            await self._set_status(pod, running=False, ready=False,
                                   message=f"the gateway process exited with code {code}; restarting")
            await self._wait_changed(pod, delay)

    async def _wait_changed(self, pod: LocalPod, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pod.changed.wait(), seconds)

    async def _supervise(self, pod: LocalPod, child: Child, plan: PodPlan) -> str:
        """Probe until the process exits ("exited") or the template changes/the Deployment goes ("changed")."""
        exited = asyncio.ensure_future(child.wait())
        changed = asyncio.ensure_future(pod.changed.wait())
        prober = asyncio.ensure_future(self._probe(pod, plan))
        try:
            done, _ = await asyncio.wait({exited, changed}, return_when=asyncio.FIRST_COMPLETED)
            return "changed" if changed in done and exited not in done else "exited"
        finally:
            for task in (exited, changed, prober):
                task.cancel()
            for task in (exited, changed, prober):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _probe(self, pod: LocalPod, plan: PodPlan) -> None:
        probe = plan.readiness
        failures = 0
        while True:
            ok = True if probe is None else await self._probe_once(probe.path, probe.port)
            if ok:
                failures = 0
                if not pod.ready:
                    pod.ready = True
                    self.notify(f"gateway {pod.label}: ready")
                    await self._set_status(pod, running=True, ready=True, message="the gateway process is ready")
                    if self.on_ready is not None:
                        self.on_ready(pod.key, dict(plan.ports))
            else:
                failures += 1
                threshold = 1 if probe is None else probe.failure_threshold
                if pod.ready and failures >= threshold:
                    pod.ready = False
                    self.notify(f"gateway {pod.label}: not ready (readiness probe failed {failures} times)")
                    await self._set_status(pod, running=True, ready=False, message="the readiness probe fails")
            if probe is None:
                await asyncio.Event().wait()  # ready for as long as it runs
            interval = STARTUP_PROBE_INTERVAL if not pod.ready else min(probe.period if probe else 10.0,
                                                                       MAX_PROBE_INTERVAL)
            await asyncio.sleep(interval)

    async def _probe_once(self, path: str, port: int) -> bool:
        assert self._http is not None
        try:
            async with self._http.get(f"http://127.0.0.1:{port}{path}") as rsp:
                await rsp.read()
                return 200 <= rsp.status < 400
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    # -- preparing a pod --------------------------------------------------------------------------

    def _pod_dir(self, key: Key) -> Path:
        return self.state_dir / "gateways" / key[0] / key[1]

    async def _prepare(self, pod: LocalPod, deployment: Obj) -> PodPlan | None:
        """The plan with volumes written and the environment resolvable, or None (status says why)."""
        try:
            names = [name for name, _ in container_ports(deployment)]
            plan = plan_pod(deployment, python=self.python, pod_dir=self._pod_dir(pod.key),
                            local_ports=self.port_map.ports(pod.key, names), kubeconfig=self.kubeconfig,
                            extra_args=self.extra_args)
        except PodPlanError as exc:
            self.notify(f"gateway {pod.label}: cannot run the pod template locally: {exc}")
            await self._set_status(pod, running=False, ready=False, message=str(exc))
            return None
        for warning in plan.warnings:
            self.notify(f"gateway {pod.label}: {warning}")
        problems = await self._write_volumes(pod.key[0], plan)
        env, env_problems = await self._resolve_env(pod, plan)
        problems += env_problems
        if problems:
            text = "; ".join(problems)
            if pod.problem != text:
                self.notify(f"gateway {pod.label}: waiting: {text}")
                pod.problem = text
            await self._set_status(pod, running=False, ready=False, message=f"waiting: {text}")
            return None
        pod.problem = None
        pod.env = env
        plan.cwd.mkdir(parents=True, exist_ok=True)
        return plan

    async def _lookup_many(self, namespace: str, refs: set[tuple[str, str]]) -> dict[tuple[str, str], Data]:
        out: dict[tuple[str, str], Data] = {}
        for kind, name in refs:
            obj = await self.kube.get("v1", kind, namespace, name)
            if kind == "Secret":
                out[(kind, name)] = decode_secret_data(obj)
            else:
                out[(kind, name)] = None if obj is None else {k: str(v) for k, v in (obj.get("data") or {}).items()}
        return out

    async def _write_volumes(self, namespace: str, plan: PodPlan) -> list[str]:
        problems: list[str] = []
        refs = {("Secret" if v.kind == "secret" else "ConfigMap", str(v.source))
                for v in plan.volumes if v.kind in ("secret", "configMap")}
        found = await self._lookup_many(namespace, refs)
        for vol in plan.volumes:
            if vol.kind == "emptyDir":
                vol.local_dir.mkdir(parents=True, exist_ok=True)
                continue
            kind = "Secret" if vol.kind == "secret" else "ConfigMap"
            data = found.get((kind, str(vol.source)))
            if data is None and not vol.optional:
                problems.append(f"volume {vol.name}: {kind} {vol.source} not found")
                continue
            if vol.local_dir.exists():
                shutil.rmtree(vol.local_dir)
            vol.local_dir.mkdir(parents=True, mode=0o700)
            for rel, content in volume_files(vol, data or {}).items():
                target = vol.local_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(content)
        return problems

    async def _resolve_env(self, pod: LocalPod, plan: PodPlan) -> tuple[dict[str, str], list[str]]:
        refs: set[tuple[str, str]] = set()
        for var in plan.env:
            src = var.get("valueFrom") or {}
            for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                if src.get(key):
                    refs.add((kind, str(src[key].get("name"))))
        for source in plan.env_from:
            for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                if source.get(key):
                    refs.add((kind, str(source[key].get("name"))))
        found = await self._lookup_many(pod.key[0], refs)
        template_meta = ((pod.deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
        pod_meta = {"name": pod_name(pod.key[1], plan.template_hash), "namespace": pod.key[0],
                    "uid": str(uuid.uuid4()), "labels": template_meta.get("labels") or {},
                    "annotations": template_meta.get("annotations") or {}}
        return resolve_env(plan.env, plan.env_from, pod_meta, lambda kind, name: found.get((kind, name)))

    def _env_of(self, pod: LocalPod, plan: PodPlan) -> dict[str, str]:
        env = host_environment(self.environ)
        env.update(pod.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    # -- status -----------------------------------------------------------------------------------

    async def _set_status(self, pod: LocalPod, *, running: bool, ready: bool, message: str) -> None:
        generation = (pod.deployment.get("metadata") or {}).get("generation")
        signature = (running, ready, message, generation)
        if signature == pod.status_signature:
            return
        status = deployment_status(pod.deployment, running=running, ready=ready, message=message,
                                   previous=pod.last_status or (pod.deployment.get("status") or {}))
        try:
            await self.kube.patch_status("apps/v1", "Deployment", pod.key[0], pod.key[1], status)
        except Exception as exc:  # KubeError, or httpx errors while the API server goes away
            log.warning("cannot write the status of Deployment %s: %s", pod.label, exc)
            return
        pod.last_status = {k: v for k, v in status.items() if v is not None}
        pod.status_signature = signature
        pod.status_message = message
