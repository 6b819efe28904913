"""The cluster path: the gateway follows ConfigMap <instance>-routes and Secret <instance>-upstream
through the Kubernetes API (the project's local API server), reloading on every change."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from newapi_gateway.demo_upstream import DemoUpstreamProcess
from newapi_gateway.routing_table import dump_table
from newapi_gateway.sources import KubeObjectWatch
from newapi_operator.apiserver.server import LocalAPIServer, ThreadedAPIServer

from .gateway_fixtures import channel, poll_until, run_gateway, sync_poll_until, table, write_json

HELLO = [{"role": "user", "content": "hello kube"}]
NS = "default"


def routes_cm(upstream: DemoUpstreamProcess, name: str = "inst-routes") -> dict[str, Any]:
    t = table([channel("c", ["m"], type="openai-compatible", endpoint=upstream.openai_base_url, credential="cred")])
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS},
            "data": {"routes.json": dump_table(t).decode()}}


def secret(key: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "inst-upstream", "namespace": NS},
            "type": "Opaque", "data": {"cred": base64.b64encode(key.encode()).decode()}}


def put(api: str, plural: str, obj: dict[str, Any]) -> None:
    base = f"{api}/api/v1/namespaces/{NS}/{plural}"
    name = obj["metadata"]["name"]
    current = httpx.get(f"{base}/{name}")
    if current.status_code == 404:
        r = httpx.post(base, json=obj)
    else:
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": current.json()["metadata"]["resourceVersion"]}}
        r = httpx.put(f"{base}/{name}", json=obj)
    assert r.status_code in (200, 201), r.text


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[DemoUpstreamProcess, DemoUpstreamProcess]]:
    a = DemoUpstreamProcess.spawn(name="ka")
    b = DemoUpstreamProcess.spawn(name="kb")
    yield a, b
    a.stop()
    b.stop()


def test_gateway_follows_configmap_and_secret(tmp_path: Path,
                                              upstreams: tuple[DemoUpstreamProcess, DemoUpstreamProcess]) -> None:
    a, b = upstreams
    with ThreadedAPIServer() as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        write_json(tmp_path / "keys.json", [{"key": "sk-1"}])
        put(server.url, "secrets", secret("sk-cred-1"))
        put(server.url, "configmaps", routes_cm(a))
        with run_gateway(tmp_path, "--kube", "--kubeconfig", str(kubeconfig), "--namespace", NS, "--instance", "inst",
                         "--keys", str(tmp_path / "keys.json")) as gw:
            client = openai.OpenAI(base_url=gw.base_url, api_key="sk-1", max_retries=0, timeout=20)

            def served_by() -> str:
                return str(client.chat.completions.create(model="m", messages=HELLO).system_fingerprint)  # type: ignore[arg-type]

            sync_poll_until(lambda: served_by() == "fp_ka")
            assert a.last_request()["headers"]["authorization"] == "Bearer sk-cred-1"
            # a new table in the ConfigMap is picked up through the watch
            put(server.url, "configmaps", routes_cm(b))
            sync_poll_until(lambda: served_by() == "fp_kb")
            version = httpx.get(gw.url + "/readyz").json()["routingTableVersion"]
            # an invalid table is rejected; the current one stays
            bad = routes_cm(b)
            bad["data"]["routes.json"] = json.dumps({"instance": "inst", "channels": [{"name": "x"}]})
            put(server.url, "configmaps", bad)
            sync_poll_until(lambda: 'source="kubernetes",result="rejected"' in gw.metrics())
            assert httpx.get(gw.url + "/readyz").json()["routingTableVersion"] == version
            assert served_by() == "fp_kb"
            assert "channels[0].models: required field is missing" in gw.logs()
            # a rotated credential in the Secret is used from then on
            put(server.url, "secrets", secret("sk-cred-2"))

            def uses_new_key() -> bool:
                served_by()
                return bool(b.last_request()["headers"]["authorization"] == "Bearer sk-cred-2")

            sync_poll_until(uses_new_key)
            assert 'gateway_routing_table_reloads_total{source="kubernetes-secret",result="ok"}' in gw.metrics()
            # a table too large for plain data is stored gzip-compressed in binaryData (what the operator
            # writes for thousands of channels); the gateway reads it the same way
            compressed = routes_cm(a)
            document = compressed.pop("data")["routes.json"].encode()
            compressed["binaryData"] = {"routes.json.gz": base64.b64encode(gzip.compress(document)).decode()}
            put(server.url, "configmaps", compressed)
            sync_poll_until(lambda: served_by() == "fp_ka")


async def test_watch_relists_after_410_gone(caplog: pytest.LogCaptureFixture) -> None:
    """An expired resourceVersion (410 Gone) makes the watch list again instead of failing."""
    caplog.set_level("INFO", logger="newapi_gateway.sources")
    async with LocalAPIServer(history_size=3) as server:
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client import ApiClient, Configuration

        conf = Configuration(host=server.url)
        async with ApiClient(conf) as api_client:
            core = client.CoreV1Api(api_client)
            seen: list[dict[str, str] | None] = []
            await core.create_namespaced_config_map(NS, {"metadata": {"name": "w-routes"}, "data": {"v": "1"}})
            watch = KubeObjectWatch(core, "configmap", NS, "w-routes", seen.append, watch_timeout=1, max_backoff=0.2)
            task = asyncio.create_task(watch.run())
            try:
                await poll_until(lambda: seen == [{"v": "1"}])
                # churn other objects until the watched version falls out of the server's history
                for i in range(10):
                    await core.create_namespaced_config_map(NS, {"metadata": {"name": f"other-{i}"}, "data": {}})
                await core.replace_namespaced_config_map(
                    "w-routes", NS, {"metadata": {"name": "w-routes"}, "data": {"v": "2"}})
                await poll_until(lambda: {"v": "2"} in seen, timeout=20)
                for i in range(10):
                    await core.delete_namespaced_config_map(f"other-{i}", NS)
                await poll_until(lambda: watch.lists >= 2, timeout=20)
                assert "watch expired; re-listing" in caplog.text
                await core.delete_namespaced_config_map("w-routes", NS)
                await poll_until(lambda: seen[-1] is None, timeout=20)
            finally:
                task.cancel()
