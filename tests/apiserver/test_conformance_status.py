"""Conformance: the status subresource (status only via /status; spec untouched there)."""

from __future__ import annotations

from typing import Any


async def test_status_is_dropped_on_create_and_ignored_on_the_main_endpoint(cluster: Any) -> None:
    body = cluster.widget("st", size=1)
    body["status"] = {"phase": "Sneaky"}
    created = await cluster.create(cluster.widgets(), body)
    assert "status" not in created
    put = dict(created, spec={"size": 2}, status={"phase": "StillSneaky"})
    replaced = await cluster.client.put(cluster.widgets("st"), json=put)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["spec"]["size"] == 2
    assert "status" not in replaced.json()
    patched = await cluster.patch(cluster.widgets("st"), {"status": {"phase": "Patched"}})
    assert "status" not in patched.json()


async def test_status_endpoint_changes_status_only(cluster: Any) -> None:
    created = await cluster.create(cluster.widgets(), cluster.widget("ss", size=1))
    generation = created["metadata"]["generation"]
    update = dict(created, spec={"size": 9}, status={"phase": "Ready", "observedGeneration": generation})
    update["metadata"] = dict(created["metadata"], labels={"ignored": "yes"})
    response = await cluster.client.put(cluster.widgets("ss", sub="status"), json=update)
    assert response.status_code == 200, response.text
    obj = response.json()
    assert obj["status"] == {"phase": "Ready", "observedGeneration": generation}
    assert obj["spec"]["size"] == 1  # spec is untouched through /status
    assert "labels" not in obj["metadata"]  # and so is metadata
    assert obj["metadata"]["generation"] == generation  # status changes do not bump generation
    change = {"status": {"phase": "Done"}, "spec": {"size": 7}}
    patched = await cluster.patch(cluster.widgets("ss", sub="status"), change)
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"]["phase"] == "Done"
    assert patched.json()["spec"]["size"] == 1
    fetched = await cluster.get(cluster.widgets("ss"))
    assert fetched["status"]["phase"] == "Done"


async def test_status_endpoint_with_stale_resource_version_answers_409(cluster: Any) -> None:
    created = await cluster.create(cluster.widgets(), cluster.widget("sc"))
    await cluster.patch(cluster.widgets("sc", sub="status"), {"status": {"n": 1}})
    stale = dict(created, status={"n": 2})
    response = await cluster.client.put(cluster.widgets("sc", sub="status"), json=stale)
    assert response.status_code == 409, response.text


async def test_status_subresource_of_kind_without_one_is_404(cluster: Any) -> None:
    await cluster.create(cluster.cm(), cluster.configmap("nostatus"))
    response = await cluster.client.get(cluster.cm("nostatus", sub="status"))
    assert response.status_code == 404
