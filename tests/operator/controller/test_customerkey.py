"""CustomerKeys end to end: the real operator, the real gateway admin API (a gateway process on embedded
state) and the API server. The gateway's customer port proves what the operator registered: the key
in the Secret authenticates (``GET /quota``), with the tier, caps and credit of the spec.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from newapi_operator.controller.adminapi import AdminClient
from newapi_operator.controller.kube import KubeClient

from .conftest import (
    API,
    Cluster,
    GatewayProcess,
    OperatorProcess,
    apply_all,
    conditions,
    events_for,
    versions,
    wait_for,
)
from .objects import customer_key, instance, secret, vllm

Start = Callable[..., OperatorProcess]


def _admin_secret(gateway: GatewayProcess, name: str = "gw") -> dict[str, Any]:
    """The instance's admin token, pre-created as the gateway's (the operator keeps an existing token)."""
    doc = secret(f"{name}-admin")
    doc["data"] = {"token": base64.b64encode(gateway.token.encode()).decode()}
    return doc


@pytest.fixture(scope="module")
def key_ns(cluster: Cluster) -> Iterator[str]:
    from tests.services import run_async

    name = f"opd-keys-{uuid.uuid4().hex[:6]}"

    async def create() -> None:
        kube = await KubeClient.connect(str(cluster.kubeconfig))
        await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        await kube.close()

    async def delete() -> None:
        kube = await KubeClient.connect(str(cluster.kubeconfig))
        await kube.delete("v1", "Namespace", None, name)
        await kube.close()

    run_async(create)
    yield name
    run_async(delete)


@pytest.fixture(scope="module")
def key_operator(cluster: Cluster, gateway: GatewayProcess, key_ns: str,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("key-operator") / "operator.log"
    op = OperatorProcess(cluster, log, "--standalone", "--namespace", key_ns, "--admin-url", gateway.admin_url,
                         "--usage-refresh", "2").start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def key_instance(cluster: Cluster, gateway: GatewayProcess, key_ns: str) -> str:
    from tests.services import run_async

    async def create() -> None:
        kube = await KubeClient.connect(str(cluster.kubeconfig))
        await apply_all(kube, key_ns, _admin_secret(gateway), vllm("local"), instance())
        await kube.close()

    run_async(create)
    return "gw"


async def _quota(gateway: GatewayProcess, key: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(f"{gateway.url}/quota", headers={"Authorization": f"Bearer {key}"})


async def _key_of(kube: KubeClient, ns: str, name: str) -> str:
    sec = await kube.get("v1", "Secret", ns, f"{name}-key")
    assert sec is not None, "no key Secret yet"
    return base64.b64decode(sec["data"]["key"]).decode()


async def _ready(kube: KubeClient, ns: str, name: str, reason: str = "Active") -> dict[str, Any]:
    async def probe() -> dict[str, Any]:
        obj = await kube.get(API, "CustomerKey", ns, name)
        assert conditions(obj).get("Ready") == ("True" if reason == "Active" else "False", reason), obj
        assert obj is not None
        return obj
    return await wait_for(probe, what=f"CustomerKey {name} {reason}")


async def test_key_lifecycle(kube: KubeClient, key_ns: str, key_instance: str, key_operator: OperatorProcess,
                             gateway: GatewayProcess) -> None:
    ns = key_ns
    await apply_all(kube, ns, customer_key("ada", spendingCap={"daily": 1_000_000}, rateLimit={"rpm": 60}))
    obj = await _ready(kube, ns, "ada")
    st = obj["status"]
    key = await _key_of(kube, ns, "ada")
    assert key.startswith("sk-")
    assert len(key) >= 46
    assert st["keyPrefix"] == key[:11]
    assert st["secretName"] == "ada-key"
    assert st["rotation"] == 0
    assert conditions(obj)["CreditGranted"] == ("True", "Granted")
    assert st["usage"]["balance"] == 5_000_000
    sec = await kube.get("v1", "Secret", ns, "ada-key")
    assert sec is not None
    assert base64.b64decode(sec["data"]["keyId"]).decode() == st["keyId"]
    assert sec["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    assert obj["metadata"]["finalizers"] == ["newapi.openova.io/finalizer"]

    rsp = await _quota(gateway, key)
    assert rsp.status_code == 200, rsp.text
    quota = rsp.json()
    assert (quota["tier"], quota["customer"], quota["credit"]["balance"]) == ("pro", "cust-ada", 5_000_000)
    assert quota["spendingCap"]["daily"] == 1_000_000
    assert quota["rateLimit"]["rpm"] == 60
    assert any(e["reason"] == "Active" for e in await events_for(kube, ns, "ada"))

    # Spec changes reach the gateway.
    await kube.merge_patch(API, "CustomerKey", ns, "ada", {"spec": {"tier": "enterprise",
                                                                    "spendingCap": {"daily": 2_000_000}}})

    async def updated() -> bool:
        q = (await _quota(gateway, key)).json()
        assert q["tier"] == "enterprise", q
        assert q["spendingCap"]["daily"] == 2_000_000, q
        return True
    await wait_for(updated, what="the tier and cap at the gateway")

    # Suspension blocks the key within seconds; resuming unblocks it.
    await kube.merge_patch(API, "CustomerKey", ns, "ada", {"spec": {"suspended": True}})
    await _ready(kube, ns, "ada", "Suspended")

    async def blocked() -> bool:
        assert (await _quota(gateway, key)).status_code in (401, 403)
        return True
    await wait_for(blocked, seconds=5, what="the suspended key to be refused")
    await kube.merge_patch(API, "CustomerKey", ns, "ada", {"spec": {"suspended": False}})
    await _ready(kube, ns, "ada")

    async def works() -> bool:
        assert (await _quota(gateway, key)).status_code == 200
        return True
    await wait_for(works, seconds=5, what="the resumed key to work")

    # Rotation: a new key works, the old one is revoked; the credit is not granted again.
    old_id = st["keyId"]
    await kube.merge_patch(API, "CustomerKey", ns, "ada", {"spec": {"rotation": 1}})

    async def rotated() -> str:
        obj = await kube.get(API, "CustomerKey", ns, "ada")
        st = (obj or {}).get("status") or {}
        assert st.get("rotation") == 1, st
        assert st.get("keyId") != old_id, st
        new = await _key_of(kube, ns, "ada")
        assert new != key
        assert (await _quota(gateway, new)).status_code == 200
        assert (await _quota(gateway, key)).status_code in (401, 403)
        sec = await kube.get("v1", "Secret", ns, "ada-key")
        assert sec is not None
        assert "newapi.openova.io/previous-key-id" not in sec["metadata"].get("annotations", {})
        return new
    new_key = await wait_for(rotated, what="the rotation")
    async with httpx.AsyncClient() as http:
        admin = AdminClient(gateway.admin_url, gateway.token, http)
        assert (await admin.balance("cust-ada"))["balance"] == 5_000_000
        grants = [e for e in (await admin.ledger("cust-ada"))["data"] if e["idempotencyKey"]]
        assert len(grants) == 1
        assert grants[0]["idempotencyKey"].startswith(f"grant:{ns}/ada:")
        assert (await admin.get_key(old_id) or {})["status"] == "revoked"

        # The usage snapshot follows the gateway (a top-up), at the refresh rate.
        await admin.grant("cust-ada", 250_000, f"topup-{uuid.uuid4()}", "test top-up")

    async def usage() -> bool:
        obj = await kube.get(API, "CustomerKey", ns, "ada")
        assert ((obj or {}).get("status") or {}).get("usage", {}).get("balance") == 5_250_000, obj
        return True
    await wait_for(usage, seconds=15, what="the usage snapshot to follow the balance")

    # Deletion revokes first, then lets the object (and its Secret) go.
    await kube.delete(API, "CustomerKey", ns, "ada")

    async def gone() -> bool:
        assert await kube.get(API, "CustomerKey", ns, "ada") is None
        assert await kube.get("v1", "Secret", ns, "ada-key") is None
        assert (await _quota(gateway, new_key)).status_code in (401, 403)
        return True
    await wait_for(gone, what="revocation and deletion")
    key_operator.assert_healthy()


async def test_problems_surface_as_conditions_and_events(kube: KubeClient, key_ns: str, key_instance: str,
                                                        key_operator: OperatorProcess,
                                                        gateway: GatewayProcess) -> None:
    ns = key_ns
    await apply_all(kube, ns, customer_key("gold", tier="gold"), customer_key("orphan", instance_name="nope"),
                    customer_key("open", creditGrant=None, spendingCap={}))
    await _ready(kube, ns, "gold", "InvalidSpec")
    await _ready(kube, ns, "orphan", "InstanceNotFound")
    obj = await _ready(kube, ns, "open", "InvalidSpec")
    message = next(c["message"] for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert "spec.creditGrant" in message
    for name, reason in (("gold", "InvalidSpec"), ("orphan", "InstanceNotFound")):
        assert any(e["reason"] == reason and e["type"] == "Warning" for e in await events_for(kube, ns, name))
    assert await kube.get("v1", "Secret", ns, "gold-key") is None  # no key material for an invalid key
    # An enterprise (unlimitedCredit) key may have an open budget.
    await kube.merge_patch(API, "CustomerKey", ns, "open", {"spec": {"tier": "enterprise"}})
    await _ready(kube, ns, "open")
    # The missing instance appears: the waiting key is registered.
    await apply_all(kube, ns, _admin_secret(gateway, "nope"), instance("nope"))
    await _ready(kube, ns, "orphan")
    for name in ("gold", "orphan", "open"):
        await kube.delete(API, "CustomerKey", ns, name)


async def test_crash_mid_registration_never_duplicates_keys_or_credit(
    kube: KubeClient, own_ns: str, start_operator: Start, tmp_path: Any
) -> None:
    ns = own_ns
    gateway = GatewayProcess(tmp_path / "gw", token=f"admin-{uuid.uuid4().hex}").start()
    try:
        count = 40
        await apply_all(kube, ns, _admin_secret(gateway), vllm("local"), instance(),
                        *[customer_key(f"k{i:02d}") for i in range(count)])
        args = ("--standalone", "--namespace", ns, "--admin-url", gateway.admin_url, "--usage-refresh", "3600")
        crashing = start_operator(*args, name="crashing")

        async def some_ready() -> bool:
            keys = await kube.list(API, "CustomerKey", ns)
            return sum(conditions(k).get("Ready") == ("True", "Active") for k in keys) >= 3
        await wait_for(some_ready, what="the first keys")
        crashing.kill()
        restarted = start_operator(*args, name="restarted")

        async def all_ready() -> list[dict[str, Any]]:
            keys = await kube.list(API, "CustomerKey", ns)
            assert sum(conditions(k).get("Ready") == ("True", "Active") for k in keys) == count
            return keys
        keys = await wait_for(all_ready, seconds=60, what="every key after the restart")

        async with httpx.AsyncClient() as http:
            admin = AdminClient(gateway.admin_url, gateway.token, http)
            for obj in keys:
                name = obj["metadata"]["name"]
                customer = obj["spec"]["customer"]["externalId"]
                ledger = (await admin.ledger(customer))["data"]
                assert [e["amount"] for e in ledger] == [5_000_000], (name, ledger)
                key = await _key_of(kube, ns, name)
                q = (await _quota(gateway, key)).json()
                assert q["keyId"] == obj["status"]["keyId"]
                assert q["credit"]["balance"] == 5_000_000
            # Exactly one key per CustomerKey was ever issued: ids are sequential from key_1.
            ids = sorted(int(k["status"]["keyId"].removeprefix("key_")) for k in keys)
            assert ids == list(range(1, count + 1)), ids
            assert await admin.get_key(f"key_{count + 1}") is None

        # A restart over settled keys writes nothing (Kopf's storage included).
        await asyncio.sleep(1.0)
        restarted.stop()
        before = await versions(kube, ns)
        again = start_operator(*args, name="again")

        async def drained() -> bool:
            d = again.drained("customerkeys")
            assert d is not None
            assert d["processed"] >= count, d
            return True
        await wait_for(drained, what="the startup pass over the keys")
        await asyncio.sleep(1.0)
        after = await versions(kube, ns)
        assert {k: v for k, v in after.items() if before.get(k) != v} == {}
        again.assert_healthy()
    finally:
        gateway.stop()


async def test_a_gateway_outage_is_retried_until_the_key_is_registered(
    kube: KubeClient, own_ns: str, start_operator: Start, tmp_path: Any
) -> None:
    ns = own_ns
    gateway = GatewayProcess(tmp_path / "gw", token=f"admin-{uuid.uuid4().hex}")  # not started yet
    try:
        await apply_all(kube, ns, _admin_secret(gateway), vllm("local"), instance(), customer_key("early"))
        op = start_operator("--standalone", "--namespace", ns, "--admin-url", gateway.admin_url,
                            "--usage-refresh", "2")
        obj = await _ready(kube, ns, "early", "GatewayUnavailable")
        message = next(c["message"] for c in obj["status"]["conditions"] if c["type"] == "Ready")
        assert "admin API" in message
        assert any(e["reason"] == "GatewayUnavailable" for e in await events_for(kube, ns, "early"))
        gateway.start()
        await _ready(kube, ns, "early")
        key = await _key_of(kube, ns, "early")
        assert (await _quota(gateway, key)).status_code == 200
        op.assert_healthy()
    finally:
        gateway.stop()
