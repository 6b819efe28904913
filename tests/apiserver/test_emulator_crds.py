"""The product's CRDs in the local API server: discovery, and validation as the CRD tests expect it.

Every valid fixture of tests/operator/fixtures is accepted over HTTP; every invalid one whose
rule the CRD can express is rejected naming the same field (and message, where the fixture
gives one); the ones only the operator can check are accepted.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from newapi_operator.api.v1alpha1 import KINDS
from newapi_operator.apiserver import LocalAPIServer
from newapi_operator.crdgen import build_crds

FIXTURES = Path(__file__).resolve().parents[1] / "operator" / "fixtures"
VALID = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((FIXTURES / "valid").glob("*.yaml"))}
INVALID = yaml.safe_load((FIXTURES / "invalid.yaml").read_text())
NAMESPACE = "tenant-a"


def build(ref: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(VALID[ref["object"]])
    for dotted, value in (ref.get("set") or {}).items():
        *parents, last = dotted.split(".")
        node = obj
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = copy.deepcopy(value)
    for dotted in ref.get("unset") or []:
        *parents, last = dotted.split(".")
        node = obj
        for part in parents:
            node = node[part]
        del node[last]
    return obj


def path_of(obj: dict[str, Any]) -> str:
    kind = next(k for k in KINDS if k.info.kind == obj["kind"])
    return f"/apis/{obj['apiVersion']}/namespaces/{NAMESPACE}/{kind.info.plural}"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with LocalAPIServer(crds=build_crds()) as server, httpx.AsyncClient(base_url=server.url) as http:
        created = await http.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                              "metadata": {"name": NAMESPACE}})
        assert created.status_code == 201
        yield http
        assert server.errors == []


async def test_product_kinds_are_discoverable(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/apis/newapi.openova.io/v1alpha1")).json()
    resources = {r["name"]: r for r in doc["resources"]}
    for kind in KINDS:
        entry = resources[kind.info.plural]
        assert entry["kind"] == kind.info.kind
        assert entry["namespaced"] is True
        assert entry["shortNames"] == kind.info.short_names
        assert f"{kind.info.plural}/status" in resources


async def test_kopf_peering_resources_are_served(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/apis/kopf.dev/v1")).json()
    assert {r["name"] for r in doc["resources"]} >= {"kopfpeerings", "clusterkopfpeerings"}


@pytest.mark.parametrize("name", sorted(VALID))
async def test_valid_fixture_is_accepted(client: httpx.AsyncClient, name: str) -> None:
    obj = VALID[name]
    response = await client.post(path_of(obj), json=obj, params={"fieldValidation": "Strict"})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("case", [c for c in INVALID if c.get("check", "object") == "object"], ids=lambda c: c["id"])
async def test_invalid_fixture_is_rejected_as_the_crd_says(client: httpx.AsyncClient, case: dict[str, Any]) -> None:
    obj = build(case)
    response = await client.post(path_of(obj), json=obj, params={"fieldValidation": "Strict"})
    if case.get("crd") is None:
        assert response.status_code == 201, response.text
        return
    assert response.status_code in (400, 422), response.text
    status = response.json()
    fields = {c.get("field") for c in status.get("details", {}).get("causes", [])}
    assert case["crd"] in fields or case["crd"] in status["message"], status
    if case.get("crd_message"):
        assert case["crd_message"] in status["message"], status
