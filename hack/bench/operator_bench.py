"""Operator benchmark (not a timed test): how fast `kubectl apply` becomes routable, billable state.

1. **Channel -> routing table**: a Channel is created; the time until the instance's routing
   ConfigMap ``<instance>-routes`` holds it (seen through a watch on the ConfigMap). ``--runs``
   times (default 50), one after another; p50 / p95 / max.
2. **CustomerKeys at once**: ``--keys`` CustomerKeys (default 2,000) are created as fast as the
   API server takes them; the time until every one is ``Ready`` (status condition), and the
   operator's peak RSS (``VmHWM``). Needs a gateway admin API (docs/admin-api.md): the command
   that starts one is ``--gateway-cmd`` (placeholders ``{newapi}``, ``{port}``, ``{admin_port}``,
   ``{routes}``, ``{admin_token_file}``, ``{state_dir}``); ``--keys 0`` skips this part.

Everything runs locally: ``newapi apiserver`` (the local API server, a subprocess), ``newapi
operator --standalone`` (a subprocess), and this script as the client.

    .venv/bin/python hack/bench/operator_bench.py [--runs 50] [--keys 2000] [--out operator-bench.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

NEWAPI = str(Path(sys.executable).parent / "newapi")
API = "newapi.openova.io/v1alpha1"
BASE = f"/apis/{API}/namespaces"
#: How the gateway with its admin listener is started (see the module docstring).
DEFAULT_GATEWAY_CMD = (
    "{newapi} gateway --host 127.0.0.1 --port {port} --admin-port {admin_port} --routes {routes} "
    "--admin-token-file {admin_token_file} --state-dir {state_dir} --log-level warning"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    """``VmHWM`` (peak resident set) of a live process, MiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Stack:
    """The API server and the operator as child processes."""

    def __init__(self, workdir: Path, admin_url: str | None) -> None:
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig"
        self.admin_url = admin_url
        self.procs: list[subprocess.Popen[bytes]] = []
        self.operator: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        api_log = (self.workdir / "apiserver.log").open("wb")
        api = subprocess.Popen([NEWAPI, "apiserver", "--kubeconfig", str(self.kubeconfig)], stdout=api_log,
                               stderr=subprocess.STDOUT)
        self.procs.append(api)
        deadline = time.monotonic() + 30
        while not self.kubeconfig.exists():
            if time.monotonic() > deadline or api.poll() is not None:
                raise SystemExit(f"the API server did not start; see {self.workdir / 'apiserver.log'}")
            time.sleep(0.1)
        server = re.search(r"server: (\S+)", self.kubeconfig.read_text())
        assert server is not None
        args = [NEWAPI, "operator", "--kubeconfig", str(self.kubeconfig), "--standalone", "--liveness", "none",
                "--log-level", "warning", "--usage-refresh", "3600"]
        if self.admin_url:
            args += ["--admin-url", self.admin_url]
        op_log = (self.workdir / "operator.log").open("wb")
        self.operator = subprocess.Popen(args, stdout=op_log, stderr=subprocess.STDOUT)
        self.procs.append(self.operator)
        return server.group(1)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()


async def create(http: httpx.AsyncClient, path: str, obj: dict[str, Any]) -> dict[str, Any]:
    rsp = await http.post(path, json=obj)
    if rsp.status_code >= 300:
        raise SystemExit(f"POST {path}: {rsp.status_code} {rsp.text[:300]}")
    doc: dict[str, Any] = rsp.json()
    return doc


def vllm_channel(name: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Channel", "metadata": {"name": name}, "spec": {
        "type": "vllm", "endpoint": "http://vllm.models.svc:8000/v1", "models": [f"m-{name}"],
        "attestation": {"kind": "in-cluster", "owner": "bench"}}}


def instance_doc(name: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "NewAPIInstance", "metadata": {"name": name},
            "spec": {"tiers": {"pro": {"dailyRequestQuota": 1000}, "enterprise": {"unlimitedCredit": True}},
                     "catalystIntegration": {"enabled": False}}}


async def wait_until(check: Any, seconds: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


async def channel_latency(http: httpx.AsyncClient, runs: int) -> dict[str, Any]:
    ns = "bench-channels"
    await create(http, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    await create(http, f"{BASE}/{ns}/channels", vllm_channel("base"))
    await create(http, f"{BASE}/{ns}/newapiinstances", instance_doc("gw"))
    cm_path = f"/api/v1/namespaces/{ns}/configmaps/gw-routes"

    async def base_routed() -> bool:
        rsp = await http.get(cm_path)
        return rsp.status_code == 200 and '"base"' in (rsp.json().get("data") or {}).get("routes.json", "")
    await wait_until(base_routed, 60, "the first routing table")

    latencies: list[float] = []
    for i in range(runs):
        name = f"ch-{i:03d}"
        current = (await http.get(cm_path)).json()
        version = current["metadata"]["resourceVersion"]
        params = {"watch": "true", "fieldSelector": "metadata.name=gw-routes", "resourceVersion": version,
                  "timeoutSeconds": "60"}
        async with http.stream("GET", f"/api/v1/namespaces/{ns}/configmaps", params=params,
                               timeout=httpx.Timeout(70.0)) as stream:
            start = time.perf_counter()
            await create(http, f"{BASE}/{ns}/channels", vllm_channel(name))
            async for line in stream.aiter_lines():
                if not line:
                    continue
                event = json.loads(line)
                data = (event.get("object") or {}).get("data") or {}
                if f'"{name}"' in data.get("routes.json", ""):
                    latencies.append(time.perf_counter() - start)
                    break
            else:
                raise SystemExit(f"the watch ended before {name} reached the routing table")
    ms = [x * 1000 for x in latencies]
    return {"runs": runs, "p50_ms": round(statistics.median(ms), 1), "p95_ms": round(percentile(ms, 0.95), 1),
            "max_ms": round(max(ms), 1), "mean_ms": round(statistics.fmean(ms), 1)}


async def keys_at_once(http: httpx.AsyncClient, count: int, operator_pid: int, gateway_admin: str | None,
                       token: str) -> dict[str, Any]:
    ns = "bench-keys"
    await create(http, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    await create(http, f"{BASE}/{ns}/channels", vllm_channel("base"))
    # The instance's admin token must be the one the benchmark's gateway accepts: pre-create the Secret
    # (the operator keeps an existing token).
    await create(http, f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gw-admin"},
        "data": {"token": base64.b64encode(token.encode()).decode()}})
    await create(http, f"{BASE}/{ns}/newapiinstances", instance_doc("gw"))
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with sem:
            await create(http, f"{BASE}/{ns}/customerkeys", {
                "apiVersion": API, "kind": "CustomerKey", "metadata": {"name": f"key-{i:05d}"},
                "spec": {"instanceRef": {"name": "gw"}, "tier": "pro", "creditGrant": 1_000_000,
                         "customer": {"externalId": f"bench-customer-{i:05d}"}}})

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    created = time.perf_counter() - start

    async def all_ready() -> bool:
        rsp = await http.get(f"{BASE}/{ns}/customerkeys")
        items = rsp.json()["items"]
        ready = sum(1 for k in items for c in (k.get("status") or {}).get("conditions") or []
                    if c["type"] == "Ready" and c["status"] == "True")
        return ready == count
    # Listing thousands of keys is itself load on the API server: look once a second (resolution 1 s).
    await wait_until(all_ready, 1800, f"{count} CustomerKeys to be Ready", every=1.0)
    total = time.perf_counter() - start
    return {"keys": count, "created_in_s": round(created, 2), "all_ready_in_s": round(total, 2),
            "keys_per_s": round(count / total, 1), "operator_peak_rss_mib": round(peak_rss_mib(operator_pid), 1)}


def cpu_report(pids: dict[str, int | None]) -> dict[str, float]:
    return {f"{name}_cpu_s": round(cpu_seconds(pid), 1) for name, pid in pids.items() if pid}


def start_gateway(template: str, workdir: Path, token: str) -> tuple[subprocess.Popen[bytes], str]:
    port, admin_port = free_port(), free_port()
    routes = workdir / "routes.json"
    routes.write_text(json.dumps({"schemaVersion": 1, "instance": "bench", "channels": [], "policy": {
        "tiers": {"pro": {"dailyRequestQuota": 1000}, "enterprise": {"unlimitedCredit": True}}}}))
    token_file = workdir / "admin-token"
    token_file.write_text(token)
    state = workdir / "gateway-state"
    state.mkdir(exist_ok=True)
    cmd = template.format(newapi=NEWAPI, port=port, admin_port=admin_port, routes=routes,
                          admin_token_file=token_file, state_dir=state)
    log = (workdir / "gateway.log").open("wb")
    proc = subprocess.Popen(shlex.split(cmd), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{admin_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the gateway exited; see {workdir / 'gateway.log'} (command: {cmd})")
        with contextlib.suppress(httpx.HTTPError):
            rsp = httpx.get(f"{url}/api/v1/admin/openapi.json", headers={"Authorization": f"Bearer {token}"})
            if rsp.status_code < 500:
                return proc, url
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the gateway's admin API did not come up; see {workdir / 'gateway.log'}")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="operator-bench-"))
    token = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    gateway: subprocess.Popen[bytes] | None = None
    admin_url = args.admin_url
    if args.keys and not admin_url:
        gateway, admin_url = start_gateway(args.gateway_cmd, workdir, token)
    stack = Stack(workdir, admin_url)
    results: dict[str, Any] = {"workdir": str(workdir)}
    try:
        server = stack.start()
        async with httpx.AsyncClient(base_url=server, timeout=30.0,
                                     limits=httpx.Limits(max_connections=64)) as http:
            results["channel_to_configmap"] = await channel_latency(http, args.runs)
            print(json.dumps(results["channel_to_configmap"]), flush=True)
            if args.keys:
                assert stack.operator is not None
                results["customerkeys_at_once"] = await keys_at_once(http, args.keys, stack.operator.pid,
                                                                     admin_url, token)
                print(json.dumps(results["customerkeys_at_once"]), flush=True)
            else:
                results["customerkeys_at_once"] = "skipped (--keys 0)"
            assert stack.operator is not None
            results["operator_peak_rss_mib"] = round(peak_rss_mib(stack.operator.pid), 1)
            results["cpu"] = cpu_report({"operator": stack.operator.pid, "apiserver": stack.procs[0].pid,
                                         "gateway": gateway.pid if gateway else None})
    finally:
        stack.stop()
        if gateway is not None and gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(20)
    return results


def cli() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=50, help="Channel -> routing table runs (default 50)")
    p.add_argument("--keys", type=int, default=2000, help="CustomerKeys created at once (default 2000; 0 = skip)")
    p.add_argument("--gateway-cmd", default=DEFAULT_GATEWAY_CMD, help="command template of the gateway")
    p.add_argument("--admin-url", help="use this running admin API instead of starting a gateway")
    p.add_argument("--out", default="operator-bench.json", help="write the results here (JSON)")
    args = p.parse_args()
    results = asyncio.run(main(args))
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
