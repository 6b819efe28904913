"""NewAPIInstance and Channel reconcile against the API server, with the real operator (shared process).

Covers the happy path, every exclusion reason surfacing as conditions and Events, hot routing
changes without pod rollouts, secret rotation, drift repair, optional children, deletion.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from newapi_gateway.routing_table import parse_table
from newapi_operator.controller.kube import KubeClient
from newapi_operator.controller.routes import read_configmap_table

from .conftest import API, Cluster, apply_all, conditions, events_for, wait_for
from .objects import byok, instance, openai, secret, vllm


async def _get(kube: KubeClient, kind: str, ns: str, name: str) -> dict[str, Any] | None:
    api = {"NewAPIInstance": API, "Channel": API, "Deployment": "apps/v1", "Role": "rbac.authorization.k8s.io/v1",
           "RoleBinding": "rbac.authorization.k8s.io/v1", "Ingress": "networking.k8s.io/v1",
           "NetworkPolicy": "networking.k8s.io/v1", "PodDisruptionBudget": "policy/v1"}.get(kind, "v1")
    return await kube.get(api, kind, ns, name)


async def _status(kube: KubeClient, ns: str, name: str = "gw") -> dict[str, Any]:
    obj = await _get(kube, "NewAPIInstance", ns, name)
    return dict((obj or {}).get("status") or {})


async def _table(kube: KubeClient, ns: str, name: str = "gw") -> Any:
    cm = await _get(kube, "ConfigMap", ns, f"{name}-routes")
    assert cm is not None, "no routes ConfigMap yet"
    return parse_table(read_configmap_table(cm.get("data"), cm.get("binaryData")) or "")


async def _settled(kube: KubeClient, ns: str, bound: list[str], name: str = "gw") -> dict[str, Any]:
    async def probe() -> dict[str, Any]:
        st = await _status(kube, ns, name)
        assert st.get("boundChannels") == bound, st
        table = await _table(kube, ns, name)
        assert table.version == st["routingTableVersion"]
        return st
    return await wait_for(probe, what=f"instance {name} to bind {bound}")


async def test_happy_path(kube: KubeClient, ns: str, cluster: Cluster) -> None:
    await apply_all(kube, ns, secret("openai-key", api_key="sk-upstream-1"), vllm("local"), openai("oai"),
                    byok("bring"), instance())
    st = await _settled(kube, ns, ["bring", "local", "oai"])
    assert st["excludedChannels"] == []
    assert conditions({"status": st})["Degraded"] == ("False", "AsExpected")
    assert st["observedGeneration"] == 1
    assert st["externalSecret"].startswith("Skipped:")

    inst = await _get(kube, "NewAPIInstance", ns, "gw")
    assert inst is not None
    uid = inst["metadata"]["uid"]
    children = [("ServiceAccount", "gw"), ("Role", "gw-gateway"), ("RoleBinding", "gw-gateway"),
                ("ConfigMap", "gw-routes"), ("Secret", "gw-upstream"), ("Secret", "gw-admin"), ("Deployment", "gw"),
                ("Service", "gw"), ("NetworkPolicy", "gw")]
    for kind, name in children:
        obj = await _get(kube, kind, ns, name)
        assert obj is not None, f"{kind}/{name} missing"
        refs = obj["metadata"]["ownerReferences"]
        assert [(r["uid"], r["controller"], r["blockOwnerDeletion"]) for r in refs] == [(uid, True, True)]
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "newapi-operator"
    upstream = await _get(kube, "Secret", ns, "gw-upstream")
    assert upstream is not None
    assert {k: base64.b64decode(v).decode() for k, v in upstream["data"].items()} == {"oai": "sk-upstream-1"}
    admin = await _get(kube, "Secret", ns, "gw-admin")
    assert admin is not None
    assert len(base64.b64decode(admin["data"]["token"])) >= 32
    table = await _table(kube, ns)
    assert {c.name: c.credential for c in table.channels} == {"bring": None, "local": None, "oai": "oai"}

    for ch in ("local", "oai", "bring"):
        obj = await _get(kube, "Channel", ns, ch)
        assert conditions(obj) == {"Attested": ("True", "Attested"), "Valid": ("True", "Valid"),
                                   "Ready": ("True", "Routable")}
    reasons = {e["reason"] for e in await events_for(kube, ns, "oai")}
    assert {"Bound", "Routable"} <= reasons
    assert conditions(inst)["Ready"] == ("False", "Progressing")  # no gateway replica is ready yet

    # The deployment controller reports a ready replica (the emulator has none: set it as it would).
    deployment = await _get(kube, "Deployment", ns, "gw")
    assert deployment is not None
    if not cluster.real:
        await kube.merge_patch("apps/v1", "Deployment", ns, "gw",
                               {"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}}, "status")

    async def ready() -> bool:
        dep = await _get(kube, "Deployment", ns, "gw")
        st = await _status(kube, ns)
        want = int(((dep or {}).get("status") or {}).get("readyReplicas") or 0)
        assert st.get("readyReplicas") == want
        if want:
            assert conditions({"status": st})["Ready"] == ("True", "Available")
        return True
    await wait_for(ready, what="readyReplicas to follow the Deployment")
    names = {e["reason"] for e in await events_for(kube, ns, "gw")}
    assert "Progressing" in names


async def test_new_channel_reaches_the_routing_table_without_rolling_pods(kube: KubeClient, ns: str) -> None:
    await apply_all(kube, ns, vllm("local"), instance())
    first = await _settled(kube, ns, ["local"])
    before = await _get(kube, "Deployment", ns, "gw")
    assert before is not None
    await apply_all(kube, ns, vllm("second", models=["llama-3"], modelMapping={}))
    second = await _settled(kube, ns, ["local", "second"])
    assert second["routingTableVersion"] != first["routingTableVersion"]
    after = await _get(kube, "Deployment", ns, "gw")
    assert after is not None
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"] == before["spec"]["template"]


async def test_every_exclusion_surfaces_as_conditions_and_events(kube: KubeClient, ns: str) -> None:
    await apply_all(
        kube, ns,
        secret("wrong-key", token="sk-x"),
        vllm("good"),
        openai("no-secret", secret="missing-secret"),
        openai("no-key", secret="wrong-key"),
        vllm("off", enabled=False),
        vllm("typo-tier", tiers=["proo"]),
        vllm("bad-mapping", modelMapping={"not-served": "x"}),
        openai("free-commercial", secret="wrong-key", tiers=["free", "pro"],
               secretRef={"name": "wrong-key", "key": "token"}),
        instance(),
    )
    expected = {"no-secret": "SecretNotFound", "no-key": "SecretKeyNotFound", "off": "Disabled",
                "typo-tier": "UnknownTier", "bad-mapping": "InvalidRoute", "free-commercial": "BindingRule"}

    async def excluded() -> dict[str, Any]:
        st = await _status(kube, ns)
        got = {e["name"]: e["reason"].split(":", 1)[0] for e in st.get("excludedChannels") or []}
        assert got == expected, got
        return st
    st = await wait_for(excluded, what="exclusions")
    assert st["boundChannels"] == ["good"]
    assert conditions({"status": st})["Degraded"] == ("True", "ChannelsExcluded")
    table = await _table(kube, ns)
    assert [c.name for c in table.channels] == ["good"]

    no_secret = await _get(kube, "Channel", ns, "no-secret")
    assert conditions(no_secret)["Ready"] == ("False", "SecretNotFound")
    assert conditions(await _get(kube, "Channel", ns, "off"))["Ready"] == ("False", "Disabled")

    async def events() -> bool:
        for name in expected:
            evs = await events_for(kube, ns, name)
            assert any(e["reason"] == "Excluded" and e["type"] == "Warning" for e in evs), (name, evs)
        assert any(e["reason"] == "SecretNotFound" for e in await events_for(kube, ns, "no-secret"))
        assert any(e["reason"] == "ChannelsExcluded" for e in await events_for(kube, ns, "gw"))
        return True
    await wait_for(events, what="Events for every exclusion")

    # Fixing the cause binds the channel within seconds (the Secret watch triggers it).
    await apply_all(kube, ns, secret("missing-secret", api_key="sk-y"))

    async def fixed() -> bool:
        st = await _status(kube, ns)
        assert "no-secret" in st["boundChannels"], st
        ch = await _get(kube, "Channel", ns, "no-secret")
        assert conditions(ch)["Ready"] == ("True", "Routable")
        return True
    await wait_for(fixed, what="the channel to be bound once its Secret exists")


async def test_aup_off_excludes_commercial_channels(kube: KubeClient, ns: str) -> None:
    await apply_all(kube, ns, secret("openai-key", api_key="k"), vllm("local"), openai("oai"),
                    instance(aup={"enforcement": "off"}))

    async def probe() -> dict[str, Any]:
        st = await _status(kube, ns)
        assert st.get("boundChannels") == ["local"], st
        return st
    st = await wait_for(probe, what="aup off to exclude the commercial channel")
    assert st["excludedChannels"][0]["name"] == "oai"
    assert st["excludedChannels"][0]["reason"].startswith("BindingRule:")
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"
    assert "spec.aup.enforcement" in degraded["message"]


async def test_secret_rotation_follows_within_seconds_without_restarts(kube: KubeClient, ns: str) -> None:
    await apply_all(kube, ns, secret("openai-key", api_key="sk-old"), openai("oai"), instance())
    await _settled(kube, ns, ["oai"])
    deployment = await _get(kube, "Deployment", ns, "gw")
    routes = await _get(kube, "ConfigMap", ns, "gw-routes")
    assert deployment is not None
    assert routes is not None
    await kube.merge_patch("v1", "Secret", ns, "openai-key",
                           {"data": {"api-key": base64.b64encode(b"sk-new").decode()}})

    async def rotated() -> bool:
        up = await _get(kube, "Secret", ns, "gw-upstream")
        assert up is not None
        assert base64.b64decode(up["data"]["oai"]) == b"sk-new"
        return True
    await wait_for(rotated, seconds=10, what="the upstream Secret to follow the rotation")
    after = await _get(kube, "Deployment", ns, "gw")
    routes_after = await _get(kube, "ConfigMap", ns, "gw-routes")
    assert after is not None
    assert routes_after is not None
    assert after["metadata"]["resourceVersion"] == deployment["metadata"]["resourceVersion"]  # no rollout
    assert routes_after["metadata"]["resourceVersion"] == routes["metadata"]["resourceVersion"]


async def test_drift_is_repaired(kube: KubeClient, ns: str) -> None:
    await apply_all(kube, ns, secret("openai-key", api_key="k"), openai("oai"), instance())
    await _settled(kube, ns, ["oai"])
    good_cm = await _get(kube, "ConfigMap", ns, "gw-routes")
    good_role = await _get(kube, "Role", ns, "gw-gateway")
    assert good_cm is not None
    assert good_role is not None

    await kube.delete("v1", "ConfigMap", ns, "gw-routes")
    await kube.delete("v1", "Service", ns, "gw")
    await kube.merge_patch("apps/v1", "Deployment", ns, "gw", {"spec": {"replicas": 4}})
    await kube.merge_patch("rbac.authorization.k8s.io/v1", "Role", ns, "gw-gateway", {"rules": [
        *good_role["rules"], {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]})
    await kube.merge_patch("v1", "Secret", ns, "gw-upstream", {"data": {"planted": "eA=="}})

    async def repaired() -> bool:
        cm = await _get(kube, "ConfigMap", ns, "gw-routes")
        assert cm is not None
        assert cm["data"] == good_cm["data"]
        assert await _get(kube, "Service", ns, "gw") is not None
        dep = await _get(kube, "Deployment", ns, "gw")
        assert dep is not None
        assert dep["spec"]["replicas"] == 1
        role = await _get(kube, "Role", ns, "gw-gateway")
        assert role is not None
        assert role["rules"] == good_role["rules"]
        up = await _get(kube, "Secret", ns, "gw-upstream")
        assert up is not None
        assert set(up["data"]) == {"oai"}
        return True
    await wait_for(repaired, seconds=20, what="drift repair")


async def test_optional_children_follow_the_spec(kube: KubeClient, ns: str) -> None:
    await apply_all(kube, ns, secret("gw-db", SQL_DSN="postgresql://x"), vllm("local"),
                    instance(ingress={"host": "api.example.test", "adminHost": "admin.example.test"}))
    await _settled(kube, ns, ["local"])
    assert await _get(kube, "Ingress", ns, "gw") is not None
    assert await _get(kube, "Ingress", ns, "gw-admin") is not None
    assert await _get(kube, "PodDisruptionBudget", ns, "gw") is None

    await kube.request("PATCH", f"/apis/newapi.openova.io/v1alpha1/namespaces/{ns}/newapiinstances/gw",
                       body=[{"op": "remove", "path": "/spec/ingress"},
                             {"op": "add", "path": "/spec/replicas", "value": 2},
                             {"op": "add", "path": "/spec/database", "value": {"existingSecret": "gw-db"}},
                             {"op": "add", "path": "/spec/valkey", "value": {"url": "redis://valkey:6379"}}],
                       content_type="application/json-patch+json")

    async def followed() -> bool:
        assert await _get(kube, "Ingress", ns, "gw") is None
        assert await _get(kube, "Ingress", ns, "gw-admin") is None
        pdb = await _get(kube, "PodDisruptionBudget", ns, "gw")
        assert pdb is not None
        dep = await _get(kube, "Deployment", ns, "gw")
        assert dep is not None
        assert dep["spec"]["replicas"] == 2
        env = {e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert {"SQL_DSN", "VALKEY_URL"} <= env
        st = await _status(kube, ns)
        assert st.get("observedGeneration") == 2
        return True
    await wait_for(followed, what="ingresses gone, PDB and shared state present")


async def test_deleting_the_instance_removes_its_children(kube: KubeClient, ns: str) -> None:
    await apply_all(kube, ns, vllm("local"), instance())
    await _settled(kube, ns, ["local"])
    await kube.delete(API, "NewAPIInstance", ns, "gw")

    async def gone() -> bool:
        for kind, name in (("ConfigMap", "gw-routes"), ("Deployment", "gw"), ("Secret", "gw-admin"),
                           ("Role", "gw-gateway"), ("Service", "gw")):
            assert await _get(kube, kind, ns, name) is None, f"{kind}/{name} still there"
        assert await _get(kube, "NewAPIInstance", ns, "gw") is None  # no finalizer held it
        return True
    await wait_for(gone, what="garbage collection of the children")
    channel = await _get(kube, "Channel", ns, "local")
    assert channel is not None
    assert not channel["metadata"].get("finalizers")


async def test_two_instances_split_channels_by_selector(kube: KubeClient, ns: str) -> None:
    await apply_all(kube, ns, vllm("a1", labels={"team": "a"}), vllm("b1", labels={"team": "b"}),
                    instance("inst-a", channelSelector={"matchLabels": {"team": "a"}}),
                    instance("inst-b", channelSelector={"matchLabels": {"team": "b"}}))
    await _settled(kube, ns, ["a1"], "inst-a")
    await _settled(kube, ns, ["b1"], "inst-b")
    # Relabelling moves a channel from one instance to the other.
    await kube.merge_patch(API, "Channel", ns, "b1", {"metadata": {"labels": {"team": "a"}}})
    await _settled(kube, ns, ["a1", "b1"], "inst-a")
    await _settled(kube, ns, [], "inst-b")
    doc = json.loads((await _get(kube, "ConfigMap", ns, "inst-b-routes") or {})["data"]["routes.json"])
    assert doc["channels"] == [] if "channels" in doc else True
