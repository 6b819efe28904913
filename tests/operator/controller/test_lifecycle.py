"""The operator process itself: restarts (no spurious writes, crash mid-reconcile), peering, webhook, liveness.

Each test runs its own ``newapi operator`` limited to its own namespace (``--namespace``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx

from newapi_operator.controller.kube import KubeClient

from .conftest import API, OperatorProcess, apply_all, conditions, free_port, versions, wait_for
from .objects import customer_key, instance, openai, secret, vllm

Start = Callable[..., OperatorProcess]


async def _converged(kube: KubeClient, ns: str, instances: dict[str, int]) -> None:
    """Every instance has bound its expected number of channels and written the table."""
    async def probe() -> bool:
        for name, count in instances.items():
            obj = await kube.get(API, "NewAPIInstance", ns, name)
            st = (obj or {}).get("status") or {}
            assert len(st.get("boundChannels") or []) == count, (name, st.get("boundChannels"))
            cm = await kube.get("v1", "ConfigMap", ns, f"{name}-routes")
            assert cm is not None
            assert st.get("routingTableVersion") in cm["data"]["routes.json"]
        return True
    await wait_for(probe, seconds=60, what=f"instances {sorted(instances)} to converge")


async def _drained(op: OperatorProcess, instances: int, channels: int) -> dict[str, Any]:
    """The operator's work queues have processed at least that many objects and are idle."""
    async def probe() -> dict[str, Any]:
        assert op.running, op.text()[-2000:]
        i, c = op.drained("instances"), op.drained("channels")
        assert i, "no drained instance queue yet"
        assert c, "no drained channel queue yet"
        assert i["processed"] >= instances, i
        assert c["processed"] >= channels, c
        return {"instances": i, "channels": c}
    return await wait_for(probe, seconds=60, what="the operator's startup pass")


async def test_restart_on_an_existing_cluster_writes_nothing(
    kube: KubeClient, own_ns: str, start_operator: Start
) -> None:
    ns = own_ns
    objs: list[dict[str, Any]] = [secret("openai-key", api_key="k")]
    for i in range(4):
        sel = {"matchLabels": {"inst": f"i{i}"}}
        objs.append(instance(f"i{i}", channelSelector=sel,
                             ingress={"host": f"api{i}.example.test", "adminHost": f"admin{i}.example.test"}))
        objs += [vllm(f"i{i}-v{j}", labels={"inst": f"i{i}"}) for j in range(20)]
        objs += [openai(f"i{i}-o{j}", labels={"inst": f"i{i}"}) for j in range(5)]
    await apply_all(kube, ns, *objs)
    first = start_operator("--standalone", "--namespace", ns)
    await _converged(kube, ns, {f"i{i}": 25 for i in range(4)})
    await _drained(first, 4, 100)
    await asyncio.sleep(1.0)  # let the events of our own last writes arrive (they cause no writes)
    first.stop()
    before = await versions(kube, ns)
    assert len(before) > 150  # hundreds of objects: 4 instances x 11 children, 100 channels, Events

    second = start_operator("--standalone", "--namespace", ns)
    stats = await _drained(second, 4, 100)
    await asyncio.sleep(1.0)
    after = await versions(kube, ns)
    changed = {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v}
    assert changed == {}, f"a restart wrote: {changed}"
    assert stats["instances"]["apiWrites"] == 0, stats
    assert stats["channels"]["apiWrites"] == 0, stats
    second.assert_healthy()


async def test_crash_mid_reconcile_converges_on_restart(kube: KubeClient, own_ns: str, start_operator: Start) -> None:
    ns = own_ns
    objs = [secret("openai-key", api_key="k"), instance()]
    objs += [vllm(f"v{j:03d}") for j in range(150)] + [openai(f"o{j:02d}") for j in range(30)]
    await apply_all(kube, ns, *objs)
    crashing = start_operator("--standalone", "--namespace", ns, name="crashing")

    async def started_writing() -> bool:
        if await kube.get("v1", "ServiceAccount", ns, "gw") is not None:
            return True
        channels = await kube.list(API, "Channel", ns)
        return any(c.get("status") for c in channels)
    await wait_for(started_writing, seconds=60, what="the first writes")
    crashing.kill()  # SIGKILL somewhere in the middle: children, channel statuses, instance status
    partial = await kube.get(API, "NewAPIInstance", ns, "gw")
    print("status at the crash:", json.dumps((partial or {}).get("status") or {})[:300])

    start_operator("--standalone", "--namespace", ns, name="restarted")
    await _converged(kube, ns, {"gw": 180})

    async def channels_ready() -> bool:
        channels = await kube.list(API, "Channel", ns)
        assert all(conditions(c).get("Ready") == ("True", "Routable") for c in channels)
        return True
    await wait_for(channels_ready, what="every channel's status")
    st = ((await kube.get(API, "NewAPIInstance", ns, "gw")) or {}).get("status") or {}
    assert st["excludedChannels"] == []
    assert st["observedGeneration"] == 1
    upstream = await kube.get("v1", "Secret", ns, "gw-upstream")
    assert upstream is not None
    assert len(upstream["data"]) == 30
    # one object per child name, all owned by the one instance
    owned = [o for o in await kube.list("v1", "Secret", ns) if o["metadata"].get("ownerReferences")]
    assert sorted(o["metadata"]["name"] for o in owned) == ["gw-admin", "gw-upstream"]


async def test_two_replicas_with_peering_only_one_acts(kube: KubeClient, own_ns: str, start_operator: Start) -> None:
    ns = own_ns
    peering = f"test-{ns}"
    await apply_all(kube, ns, vllm("first"), instance())
    active = start_operator("--namespace", ns, "--peering", peering, "--priority", "200", name="active")
    await _converged(kube, ns, {"gw": 1})
    standby = start_operator("--namespace", ns, "--peering", peering, "--priority", "100", name="standby")

    async def joined() -> bool:
        peers = await kube.get("kopf.dev/v1", "KopfPeering", ns, peering)
        assert peers is not None
        assert len(peers.get("status") or {}) == 2, peers
        assert any(m == "operator started" for m in standby.messages())
        return True
    await wait_for(joined, what="the standby replica to join the peering")
    # Kopf starts every replica paused; only the highest priority resumes.
    assert any("Resuming operations" in m for m in active.messages())

    await apply_all(kube, ns, vllm("second"))
    await _converged(kube, ns, {"gw": 2})
    acting = ("created child", "updated child", "instance status updated", "channel status updated")
    assert not [m for m in standby.messages() if m in acting], "the standby replica wrote while paused"
    assert not any("Resuming operations" in m for m in standby.messages())
    assert any(m == "channel status updated" for m in active.messages())

    active.stop()  # leaves the peering: the standby resumes at once

    async def resumed() -> bool:
        assert any("Resuming operations" in m for m in standby.messages()), standby.text()[-1500:]
        return True
    await wait_for(resumed, what="the standby replica to take over")
    await apply_all(kube, ns, vllm("third"))
    await _converged(kube, ns, {"gw": 3})
    assert any(m == "channel status updated" for m in standby.messages())
    standby.assert_healthy()


async def test_validating_webhook_and_liveness(kube: KubeClient, own_ns: str, start_operator: Start) -> None:
    ns = own_ns
    await apply_all(kube, ns, instance())
    hook, health = free_port(), free_port()
    op = start_operator("--standalone", "--namespace", ns, "--webhook-port", str(hook),
                        "--liveness", f"http://127.0.0.1:{health}/healthz")

    async def live() -> bool:
        async with httpx.AsyncClient() as http:
            try:
                rsp = await http.get(f"http://127.0.0.1:{health}/healthz")
            except httpx.HTTPError as exc:
                raise AssertionError(str(exc)) from None
            assert rsp.status_code == 200
        return True
    await wait_for(live, what="the liveness endpoint")

    def review(obj: dict[str, Any], uid: str) -> dict[str, Any]:
        group, version = obj["apiVersion"].split("/")
        plurals = {"Channel": "channels", "NewAPIInstance": "newapiinstances", "CustomerKey": "customerkeys"}
        plural = plurals[obj["kind"]]
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": uid, "kind": {"group": group, "version": version, "kind": obj["kind"]},
            "resource": {"group": group, "version": version, "resource": plural},
            "requestKind": {"group": group, "version": version, "kind": obj["kind"]},
            "requestResource": {"group": group, "version": version, "resource": plural},
            "name": obj["metadata"]["name"], "namespace": ns, "operation": "CREATE",
            "userInfo": {"username": "tester"}, "object": {**obj, "metadata": {**obj["metadata"], "namespace": ns}},
            "oldObject": None, "dryRun": False, "options": None}}

    async def admit(path: str, obj: dict[str, Any], uid: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            rsp = await http.post(f"http://127.0.0.1:{hook}/{path}", json=review(obj, uid))
        assert rsp.status_code == 200, rsp.text
        answer: dict[str, Any] = rsp.json()["response"]
        assert answer["uid"] == uid
        return answer

    async def ready() -> bool:
        try:
            await admit("validate-channels", vllm("probe"), "u0")
        except httpx.HTTPError as exc:
            raise AssertionError(str(exc)) from None
        return True
    await wait_for(ready, what="the webhook server")

    assert (await admit("validate-channels", vllm("ok"), "u1"))["allowed"] is True
    free = await admit("validate-channels", openai("sneaky", tiers=["free"]), "u2")
    assert free["allowed"] is False
    assert "free/promotional" in free["status"]["message"]
    unattested = openai("anon")
    unattested["spec"]["attestation"] = {"kind": "commercial-contract"}
    denied = await admit("validate-channels", unattested, "u3")
    assert denied["allowed"] is False
    assert "spec.attestation.accountId" in denied["status"]["message"]
    key = await admit("validate-customerkeys", customer_key("k", tier="platinum"), "u4")
    assert key["allowed"] is False
    assert "spec.tier" in key["status"]["message"]
    assert (await admit("validate-customerkeys", customer_key("k2"), "u5"))["allowed"] is True
    op.assert_healthy()
