"""Defence in depth and optional APIs, on a private emulator (emulator only: it changes the cluster's CRDs).

1. A cluster whose CRDs lack the CEL rules (an old install, or CRDs applied without them): the
   API server stores invalid objects, and the operator must still refuse them -- every
   single-object rule surfaces as a condition and an Event, and never reaches a routing table.
2. External Secrets Operator installed while the operator runs: the admin-token ExternalSecret
   appears (discovery), the status says so, and the token it provisions becomes the admin token.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from newapi_operator.apiserver import ThreadedAPIServer
from newapi_operator.controller.kube import KubeClient
from newapi_operator.crdgen import build_crds

from .conftest import API, REAL_KUBECONFIG, Cluster, OperatorProcess, apply_all, conditions, events_for, wait_for
from .objects import instance, openai, secret, vllm

pytestmark = pytest.mark.skipif(
    bool(REAL_KUBECONFIG),
    reason="emulator only: needs CRDs without CEL rules and installs a CRD of its own; not done to a real cluster",
)

ESO_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "externalsecrets.external-secrets.io"},
    "spec": {
        "group": "external-secrets.io",
        "scope": "Namespaced",
        "names": {"kind": "ExternalSecret", "plural": "externalsecrets", "singular": "externalsecret"},
        "versions": [{"name": "v1beta1", "served": True, "storage": True, "subresources": {"status": {}},
                      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}


def _strip_cel(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_cel(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [_strip_cel(v) for v in node]
    return node


@pytest.fixture(scope="module")
def bare_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    crds = [_strip_cel(copy.deepcopy(c)) for c in build_crds()]
    with ThreadedAPIServer(crds=crds) as server:
        path = server.write_kubeconfig(tmp_path_factory.mktemp("bare") / "kubeconfig")
        yield Cluster(path, real=False, server=server)


@pytest.fixture(scope="module")
def bare_operator(bare_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("bare-op") / "operator.log"
    op = OperatorProcess(bare_cluster, log, "--standalone").start()
    yield op
    op.stop()


@pytest.fixture
async def bare(bare_cluster: Cluster, bare_operator: OperatorProcess) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(str(bare_cluster.kubeconfig))
    yield client
    await client.close()
    assert bare_operator.running, bare_operator.text()[-2000:]


async def _ns(kube: KubeClient, name: str) -> str:
    await kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


async def test_single_object_rules_still_hold_without_cel(bare: KubeClient) -> None:
    ns = await _ns(bare, "no-cel")
    anon = openai("anon")
    anon["spec"]["attestation"] = {"kind": "commercial-contract"}
    mismatch = vllm("mismatch")
    mismatch["spec"]["attestation"] = {"kind": "commercial-contract", "accountId": "a", "contractRef": "c"}
    no_endpoint = vllm("no-endpoint")
    del no_endpoint["spec"]["endpoint"]
    await apply_all(bare, ns, secret("openai-key", api_key="k"), anon, mismatch, no_endpoint, vllm("fine"),
                    instance())

    async def excluded() -> dict[str, Any]:
        st = ((await bare.get(API, "NewAPIInstance", ns, "gw")) or {}).get("status") or {}
        got = {e["name"]: e["reason"].split(":", 1)[0] for e in st.get("excludedChannels") or []}
        assert got == {"anon": "Unattested", "mismatch": "Unattested", "no-endpoint": "Invalid"}, st
        assert st["boundChannels"] == ["fine"]
        return st
    await wait_for(excluded, what="invalid channels to be excluded")
    cm = await bare.get("v1", "ConfigMap", ns, "gw-routes")
    assert cm is not None
    assert "anon" not in cm["data"]["routes.json"]
    assert '"fine"' in cm["data"]["routes.json"]

    async def channel_conditions() -> bool:
        assert conditions(await bare.get(API, "Channel", ns, "anon")) == {
            "Attested": ("False", "AttestationInvalid"), "Valid": ("True", "Valid"), "Ready": ("False", "Unattested")}
        assert conditions(await bare.get(API, "Channel", ns, "no-endpoint"))["Valid"] == ("False", "SpecInvalid")
        for name, reason in (("anon", "AttestationInvalid"), ("no-endpoint", "SpecInvalid")):
            assert any(e["reason"] == reason and e["type"] == "Warning" for e in await events_for(bare, ns, name))
        return True
    await wait_for(channel_conditions, what="conditions and Events on the invalid channels")


async def test_an_invalid_instance_renders_nothing_and_says_why(bare: KubeClient) -> None:
    ns = await _ns(bare, "no-cel-instance")
    await apply_all(bare, ns, vllm("fine"), instance(replicas=3))

    async def refused() -> bool:
        obj = await bare.get(API, "NewAPIInstance", ns, "gw")
        assert conditions(obj).get("Ready") == ("False", "InvalidSpec"), obj
        message = next(c["message"] for c in obj["status"]["conditions"] if c["type"] == "Ready")  # type: ignore[index]
        assert "spec.database.existingSecret" in message
        assert "spec.valkey.url" in message
        assert any(e["reason"] == "InvalidSpec" for e in await events_for(bare, ns, "gw"))
        return True
    await wait_for(refused, what="InvalidSpec")
    assert await bare.get("apps/v1", "Deployment", ns, "gw") is None
    await bare.merge_patch(API, "NewAPIInstance", ns, "gw", {"spec": {"replicas": 1}})

    async def rendered() -> bool:
        obj = await bare.get(API, "NewAPIInstance", ns, "gw")
        assert conditions(obj).get("Ready") == ("False", "Progressing"), obj
        assert await bare.get("apps/v1", "Deployment", ns, "gw") is not None
        return True
    await wait_for(rendered, what="rendering once the spec is fixed")


async def test_external_secret_appears_when_eso_is_installed(bare: KubeClient) -> None:
    ns = await _ns(bare, "eso")
    es_spec = {"catalystIntegration": {"enabled": True, "externalSecret": {
        "remoteRef": {"key": "sovereign/example/newapi/admin-token"}}}}
    await apply_all(bare, ns, vllm("fine"), instance(**es_spec))

    async def skipped() -> bool:
        st = ((await bare.get(API, "NewAPIInstance", ns, "gw")) or {}).get("status") or {}
        assert "not served by this cluster" in (st.get("externalSecret") or ""), st
        return True
    await wait_for(skipped, what="the skip reason")
    admin_before = await bare.get("v1", "Secret", ns, "gw-admin")
    assert admin_before is not None

    await bare.create(ESO_CRD)

    async def rendered() -> dict[str, Any]:
        st = ((await bare.get(API, "NewAPIInstance", ns, "gw")) or {}).get("status") or {}
        assert (st.get("externalSecret") or "").startswith("Rendered:"), st
        es = await bare.get("external-secrets.io/v1beta1", "ExternalSecret", ns, "catalyst-newapi-admin-token")
        assert es is not None
        return es
    es = await wait_for(rendered, what="the ExternalSecret once ESO is served")
    assert es["spec"]["data"][0]["remoteRef"]["key"] == "sovereign/example/newapi/admin-token"
    assert es["metadata"]["ownerReferences"][0]["kind"] == "NewAPIInstance"

    # ESO materialises the Secret (as the controller would); the gateway's admin token follows it.
    target = secret("catalyst-newapi-admin-token", namespace=ns)
    target["data"] = {"ADMIN_API_TOKEN": base64.b64encode(b"token-from-the-vault").decode()}
    target["metadata"]["labels"] = es["spec"]["target"]["template"]["metadata"]["labels"]
    await bare.create(target)

    async def token_followed() -> bool:
        admin = await bare.get("v1", "Secret", ns, "gw-admin")
        assert admin is not None
        assert base64.b64decode(admin["data"]["token"]) == b"token-from-the-vault"
        return True
    await wait_for(token_followed, what="the admin token to come from the secret store")

    # Drift on the ExternalSecret is repaired too (its kind is watched once served).
    await bare.delete("external-secrets.io/v1beta1", "ExternalSecret", ns, "catalyst-newapi-admin-token")
    await wait_for(rendered, what="the deleted ExternalSecret to come back")
