"""Conformance: create/read/update/delete, metadata stamping, optimistic concurrency, Status errors."""

from __future__ import annotations

import re
from typing import Any

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def assert_status(response: Any, code: int, reason: str) -> dict[str, Any]:
    assert response.status_code == code, response.text
    body: dict[str, Any] = response.json()
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == code
    assert body["reason"] == reason
    assert body["message"]
    return body


async def test_create_answers_201_and_stamps_metadata(cluster: Any) -> None:
    response = await cluster.client.post(cluster.cm(), json=cluster.configmap("one", a="1"))
    assert response.status_code == 201
    obj = response.json()
    meta = obj["metadata"]
    assert obj["kind"] == "ConfigMap"
    assert obj["apiVersion"] == "v1"
    assert meta["namespace"] == cluster.namespace
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert RFC3339.match(meta["creationTimestamp"])
    assert meta["resourceVersion"].isdigit()
    assert "generation" not in meta  # ConfigMaps have no spec and no generation
    assert await cluster.get(cluster.cm("one")) == obj


async def test_resource_version_is_cluster_wide_and_increases(cluster: Any) -> None:
    first = await cluster.create(cluster.cm(), cluster.configmap("a"))
    second = await cluster.create(cluster.widgets(), cluster.widget("b"))
    patched = await cluster.patch(cluster.cm("a"), {"data": {"x": "1"}})
    versions = [int(first["metadata"]["resourceVersion"]), int(second["metadata"]["resourceVersion"]),
                int(patched.json()["metadata"]["resourceVersion"])]
    assert versions == sorted(versions)
    assert len(set(versions)) == 3
    listed = (await cluster.get(cluster.cm()))["metadata"]["resourceVersion"]
    assert int(listed) >= versions[-1]


async def test_custom_resource_generation_counts_spec_changes_only(cluster: Any) -> None:
    obj = await cluster.create(cluster.widgets(), cluster.widget("gen", size=1))
    assert obj["metadata"]["generation"] == 1
    labelled = (await cluster.patch(cluster.widgets("gen"), {"metadata": {"labels": {"a": "b"}}})).json()
    assert labelled["metadata"]["generation"] == 1
    assert int(labelled["metadata"]["resourceVersion"]) > int(obj["metadata"]["resourceVersion"])
    resized = (await cluster.patch(cluster.widgets("gen"), {"spec": {"size": 2}})).json()
    assert resized["metadata"]["generation"] == 2


async def test_deployment_generation_starts_at_one_and_server_defaults(cluster: Any) -> None:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
    }
    obj = await cluster.create(cluster.path("deployments", group="apps"), deployment)
    assert obj["metadata"]["generation"] == 1
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["strategy"]["type"] == "RollingUpdate"
    assert obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    scaled = await cluster.patch(cluster.path("deployments", "web", group="apps"), {"spec": {"replicas": 3}})
    assert scaled.json()["metadata"]["generation"] == 2


async def test_create_existing_answers_409_already_exists(cluster: Any) -> None:
    await cluster.create(cluster.cm(), cluster.configmap("dup"))
    response = await cluster.client.post(cluster.cm(), json=cluster.configmap("dup"))
    body = assert_status(response, 409, "AlreadyExists")
    assert body["details"]["name"] == "dup"
    assert body["details"]["kind"] == "configmaps"


async def test_missing_object_answers_404_not_found(cluster: Any) -> None:
    body = assert_status(await cluster.client.get(cluster.cm("nope")), 404, "NotFound")
    assert body["details"]["name"] == "nope"
    assert_status(await cluster.client.delete(cluster.cm("nope")), 404, "NotFound")
    assert_status(await cluster.patch(cluster.cm("nope"), {"data": {}}), 404, "NotFound")
    assert_status(await cluster.client.put(cluster.cm("nope"), json=cluster.configmap("nope")), 404, "NotFound")


async def test_create_in_missing_namespace_answers_404(cluster: Any) -> None:
    response = await cluster.client.post(cluster.cm(namespace="no-such-namespace-x1"), json=cluster.configmap("x"))
    body = assert_status(response, 404, "NotFound")
    assert body["details"]["kind"] == "namespaces"


async def test_generate_name(cluster: Any) -> None:
    body = cluster.configmap("ignored")
    body["metadata"] = {"generateName": "gen-"}
    obj = await cluster.create(cluster.cm(), body)
    name = obj["metadata"]["name"]
    assert name.startswith("gen-")
    assert len(name) == len("gen-") + 5
    assert (await cluster.get(cluster.cm(name)))["metadata"]["uid"] == obj["metadata"]["uid"]


async def test_invalid_names_and_labels_answer_422(cluster: Any) -> None:
    body = assert_status(await cluster.client.post(cluster.cm(), json=cluster.configmap("Bad_Name")), 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    bad_label = cluster.configmap("fine", labels={"app": "has space"})
    assert_status(await cluster.client.post(cluster.cm(), json=bad_label), 422, "Invalid")
    nameless = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}
    assert_status(await cluster.client.post(cluster.cm(), json=nameless), 422, "Invalid")


async def test_put_replaces_and_stale_resource_version_answers_409(cluster: Any) -> None:
    obj = await cluster.create(cluster.cm(), cluster.configmap("put", a="1"))
    obj["data"] = {"b": "2"}
    replaced = await cluster.client.put(cluster.cm("put"), json=obj)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["data"] == {"b": "2"}
    assert replaced.json()["metadata"]["uid"] == obj["metadata"]["uid"]
    obj["data"] = {"c": "3"}  # still carries the old resourceVersion
    body = assert_status(await cluster.client.put(cluster.cm("put"), json=obj), 409, "Conflict")
    assert "the object has been modified" in body["message"]
    assert (await cluster.get(cluster.cm("put")))["data"] == {"b": "2"}


async def test_put_with_mismatched_name_answers_400(cluster: Any) -> None:
    obj = await cluster.create(cluster.cm(), cluster.configmap("mine"))
    obj["metadata"]["name"] = "other"
    assert_status(await cluster.client.put(cluster.cm("mine"), json=obj), 400, "BadRequest")


async def test_custom_resource_update_needs_resource_version(cluster: Any) -> None:
    await cluster.create(cluster.widgets(), cluster.widget("needs-rv"))
    response = await cluster.client.put(cluster.widgets("needs-rv"), json=cluster.widget("needs-rv", size=2))
    body = assert_status(response, 422, "Invalid")
    assert "resourceVersion" in body["message"]


async def test_no_op_update_keeps_resource_version(cluster: Any) -> None:
    obj = await cluster.create(cluster.cm(), cluster.configmap("same", a="1"))
    again = await cluster.patch(cluster.cm("same"), {"data": {"a": "1"}})
    assert again.json()["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


async def test_dry_run_is_not_persisted(cluster: Any) -> None:
    response = await cluster.client.post(cluster.cm(), json=cluster.configmap("dry"), params={"dryRun": "All"})
    assert response.status_code == 201
    assert response.json()["metadata"]["name"] == "dry"
    assert (await cluster.client.get(cluster.cm("dry"))).status_code == 404
    obj = await cluster.create(cluster.cm(), cluster.configmap("wet", a="1"))
    patched = await cluster.patch(cluster.cm("wet"), {"data": {"a": "2"}}, dryRun="All")
    assert patched.json()["data"] == {"a": "2"}
    assert (await cluster.get(cluster.cm("wet")))["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    deleted = await cluster.client.delete(cluster.cm("wet"), params={"dryRun": "All"})
    assert deleted.status_code == 200
    assert (await cluster.client.get(cluster.cm("wet"))).status_code == 200


async def test_delete_answers_success_status_and_object_is_gone(cluster: Any) -> None:
    obj = await cluster.create(cluster.cm(), cluster.configmap("bye"))
    response = await cluster.client.delete(cluster.cm("bye"))
    assert response.status_code == 200
    body = response.json()
    if body.get("kind") == "Status":
        assert body["status"] == "Success"
        assert body["details"]["uid"] == obj["metadata"]["uid"]
    else:
        assert body["metadata"]["uid"] == obj["metadata"]["uid"]
    assert (await cluster.client.get(cluster.cm("bye"))).status_code == 404


async def test_delete_preconditions(cluster: Any) -> None:
    await cluster.create(cluster.cm(), cluster.configmap("pre"))
    stale = {"apiVersion": "v1", "kind": "DeleteOptions",
             "preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}}
    response = await cluster.client.request("DELETE", cluster.cm("pre"), json=stale)
    assert_status(response, 409, "Conflict")
    assert (await cluster.client.get(cluster.cm("pre"))).status_code == 200


async def test_secret_string_data_becomes_base64_data(cluster: Any) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"token": "hello"}}
    obj = await cluster.create(cluster.path("secrets"), secret)
    assert obj["data"] == {"token": "aGVsbG8="}
    assert "stringData" not in obj
    assert obj["type"] == "Opaque"
    bad = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t"}, "data": {"token": "not base64!"}}
    assert_status(await cluster.client.post(cluster.path("secrets"), json=bad), 400, "BadRequest")  # undecodable


async def test_namespace_is_stamped_like_a_real_one(cluster: Any) -> None:
    ns = await cluster.get(f"/api/v1/namespaces/{cluster.namespace}")
    assert ns["status"]["phase"] == "Active"
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == cluster.namespace
    assert "kubernetes" in ns["spec"]["finalizers"]


async def test_list_has_kind_api_version_and_resource_version(cluster: Any) -> None:
    await cluster.create(cluster.cm(), cluster.configmap("l1"))
    listed = await cluster.get(cluster.cm())
    assert listed["kind"] == "ConfigMapList"
    assert listed["apiVersion"] == "v1"
    assert listed["metadata"]["resourceVersion"].isdigit()
    assert "l1" in [item["metadata"]["name"] for item in listed["items"]]
    widgets = await cluster.get(cluster.widgets())
    assert widgets["kind"] == "WidgetList"
    assert widgets["apiVersion"] == "conformance.newapi.test/v1"
