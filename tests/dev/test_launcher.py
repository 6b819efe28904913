"""The local launcher: real gateway processes for gateway Deployments in a real local API server."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from newapi_operator.apiserver import LocalAPIServer
from newapi_operator.crdgen import build_crds
from newapi_operator.dev.kube import DevKube
from newapi_operator.dev.launcher import Launcher, PortMap, deployment_status, is_gateway_deployment
from newapi_operator.dev.ports import free_port

from .objects import gateway_deployment

API = "newapi.openova.io/v1alpha1"


async def eventually(check: Callable[[], Awaitable[Any]], what: str, seconds: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_deployment_status_is_what_a_controller_reports() -> None:
    d = gateway_deployment()
    starting = deployment_status(d, running=True, ready=False, message="starting", now="T1")
    assert starting["observedGeneration"] == 3
    assert (starting["replicas"], starting["readyReplicas"], starting["availableReplicas"]) == (1, None, None)
    assert starting["unavailableReplicas"] == 1
    available = {c["type"]: c for c in starting["conditions"]}["Available"]
    assert (available["status"], available["reason"]) == ("False", "MinimumReplicasUnavailable")
    ready = deployment_status(d, running=True, ready=True, message="ready", previous=starting, now="T2")
    assert (ready["readyReplicas"], ready["availableReplicas"], ready["unavailableReplicas"]) == (1, 1, None)
    conds = {c["type"]: c for c in ready["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Available"]["lastTransitionTime"] == "T2"
    assert conds["Progressing"]["lastTransitionTime"] == "T1"  # status unchanged: transition time kept
    more = copy.deepcopy(d)
    more["spec"]["replicas"] = 3
    assert deployment_status(more, running=True, ready=True, message="m")["unavailableReplicas"] == 2


def test_only_deployments_of_instances_are_launched() -> None:
    d = gateway_deployment()
    assert not is_gateway_deployment(d)  # no owner reference
    d["metadata"]["ownerReferences"] = [{"kind": "NewAPIInstance", "name": "newapi", "uid": "u"}]
    assert is_gateway_deployment(d)
    d["metadata"]["labels"] = {}
    assert not is_gateway_deployment(d)


def test_the_primary_instance_gets_the_configured_ports() -> None:
    ports = PortMap(("default", "newapi"), 18080, 18081)
    assert ports.ports(("default", "other"), ["http", "admin"])["http"] not in (18080, 18081)
    assert ports.ports(("default", "newapi"), ["http", "admin"]) == {"http": 18080, "admin": 18081}
    first = ports.ports(("default", "other"), ["http", "admin"])
    assert ports.ports(("default", "other"), ["http", "admin"]) == first  # stable for the run
    unset = PortMap(None, 1, 2)
    assert unset.ports(("ns", "first"), ["http"]) == {"http": 1}  # the first one seen becomes primary


def routes(instance: str) -> str:
    return json.dumps({"schemaVersion": 1, "instance": instance, "channels": [
        {"name": "c", "type": "vllm", "endpoint": "http://127.0.0.1:9/v1", "models": ["m"],
         "attestation": {"kind": "in-cluster", "owner": "test"}}], "policy": {}})


async def test_one_gateway_per_deployment_restarted_on_template_changes_stopped_on_delete(tmp_path: Path) -> None:
    async with LocalAPIServer(crds=build_crds()) as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        kube = DevKube(server.url)
        inst = await kube.apply({"apiVersion": API, "kind": "NewAPIInstance",
                                 "metadata": {"name": "newapi", "namespace": "default"}, "spec": {}})
        owner = {"apiVersion": API, "kind": "NewAPIInstance", "name": "newapi", "uid": inst["metadata"]["uid"],
                 "controller": True}
        meta = {"namespace": "default", "ownerReferences": [owner],
                "labels": {"app.kubernetes.io/managed-by": "newapi-operator"}}
        await kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "newapi-routes", **meta},
                          "data": {"routes.json": routes("newapi")}})
        await kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "newapi-upstream", **meta},
                          "data": {}})
        await kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "newapi-admin", **meta},
                          "data": {"token": base64.b64encode(b"admin-secret-of-the-launcher-test").decode()}})
        deployment = gateway_deployment()
        deployment["metadata"]["ownerReferences"] = [owner]
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        env[2]["valueFrom"]["secretKeyRef"]["name"] = "absent-db"  # a missing reference keeps it waiting
        notes: list[str] = []
        gw, admin = free_port(), free_port()
        launcher = Launcher(kube, kubeconfig=kubeconfig, state_dir=tmp_path / "state",
                            ports=PortMap(("default", "newapi"), gw, admin), notify=notes.append,
                            environ=dict(os.environ), stop_timeout=10)
        await launcher.start()
        try:
            await kube.apply(deployment)

            async def waiting() -> bool:
                d = await kube.get("apps/v1", "Deployment", "default", "newapi")
                return "absent-db" in json.dumps((d or {}).get("status") or {})

            await eventually(waiting, "the status to say what the pod waits for")
            assert launcher.pids() == []
            env.pop(2)  # the operator renders SQL_DSN only with a database Secret
            await kube.apply(deployment)

            async def ready() -> Any:
                d = await kube.get("apps/v1", "Deployment", "default", "newapi")
                return d if ((d or {}).get("status") or {}).get("readyReplicas") == 1 else None

            status = (await eventually(ready, "readyReplicas 1"))["status"]
            assert status["availableReplicas"] == 1
            assert status["observedGeneration"] == 2
            (pid,) = launcher.pids()
            async with httpx.AsyncClient(trust_env=False) as http:
                rsp = await http.get(f"http://127.0.0.1:{gw}/readyz")
                assert rsp.status_code == 200
                assert rsp.json()["instance"] == "newapi"
                # The admin API is up with the token from the Secret volume, and reachable by the admin port.
                assert launcher.admin_port("default", "newapi") == admin
                rsp = await http.get(f"http://127.0.0.1:{admin}/api/v1/admin/keys/nope",
                                     headers={"Authorization": "Bearer admin-secret-of-the-launcher-test"})
                assert rsp.status_code == 404, rsp.text
            state_db = tmp_path / "state" / "gateways" / "default" / "newapi" / "volumes" / "state" / "newapi.db"
            assert state_db.exists()

            # A status-only or replicas change keeps the process; a template change restarts it.
            deployment["spec"]["replicas"] = 2
            await kube.apply(deployment)

            async def observed() -> bool:
                d = await kube.get("apps/v1", "Deployment", "default", "newapi")
                s = (d or {}).get("status") or {}
                return s.get("observedGeneration") == 3 and s.get("unavailableReplicas") == 1

            await eventually(observed, "observedGeneration 3 with one replica unavailable")
            assert launcher.pids() == [pid]
            deployment["spec"]["template"]["spec"]["containers"][0]["args"] += ["--log-level", "debug"]
            await kube.apply(deployment)

            async def restarted() -> bool:
                return bool(launcher.pids()) and launcher.pids() != [pid]

            await eventually(restarted, "a new gateway process")
            assert not alive(pid)
            await eventually(ready, "readyReplicas 1 after the restart")
            assert any("pod template changed; restarting" in n for n in notes)

            # Deleting the Deployment stops the process.
            (pid2,) = launcher.pids()
            async with httpx.AsyncClient(base_url=server.url) as http:
                assert (await http.delete("/apis/apps/v1/namespaces/default/deployments/newapi")).status_code == 200

            async def gone() -> bool:
                return not alive(pid2) and launcher.pids() == []

            await eventually(gone, "the gateway to stop")
        finally:
            await launcher.stop()
            await kube.close()
        assert server.errors == []
