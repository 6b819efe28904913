"""Conformance: watches (spellings, list-then-watch, resumption, 410 Gone, timeouts, selectors)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest


async def _names_seen(stream: Any, names: set[str]) -> bool:
    return names <= {e["object"]["metadata"]["name"] for e in stream.events}


@pytest.mark.parametrize("spelling", ["true", "1", "True"])
async def test_watch_spellings_stream_events(cluster: Any, spelling: str) -> None:
    await cluster.create(cluster.cm(), cluster.configmap("pre", labels={"probe": "spelling"}))
    async with cluster.watch(cluster.cm(), watch=spelling, labelSelector="probe=spelling") as stream:
        first = await stream.until(1)
        assert first[0]["type"] == "ADDED"
        assert first[0]["object"]["metadata"]["name"] == "pre"
        assert first[0]["object"]["kind"] == "ConfigMap"  # watch events carry kind and apiVersion


async def test_added_modified_deleted(cluster: Any) -> None:
    listed = await cluster.get(cluster.cm())
    async with cluster.watch(cluster.cm(), resourceVersion=listed["metadata"]["resourceVersion"]) as stream:
        await cluster.create(cluster.cm(), cluster.configmap("w", a="1"))
        await cluster.patch(cluster.cm("w"), {"data": {"a": "2"}})
        await cluster.client.delete(cluster.cm("w"))
        events = await stream.until(3)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1]["object"]["data"] == {"a": "2"}
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)


async def test_list_then_watch_has_no_gap_and_no_replay(cluster: Any) -> None:
    for i in range(3):
        await cluster.create(cluster.cm(), cluster.configmap(f"old{i}"))
    listed = await cluster.get(cluster.cm())
    rv = listed["metadata"]["resourceVersion"]
    await cluster.create(cluster.cm(), cluster.configmap("between"))  # after the list, before the watch
    async with cluster.watch(cluster.cm(), resourceVersion=rv) as stream:
        await cluster.create(cluster.cm(), cluster.configmap("after"))
        events = await stream.until(2)
        await asyncio.sleep(0.3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in stream.events] == [
        ("ADDED", "between"), ("ADDED", "after")]
    assert events == stream.events


async def test_resume_delivers_exactly_the_missed_events(cluster: Any) -> None:
    await cluster.create(cluster.cm(), cluster.configmap("keep", v="1"))
    await cluster.create(cluster.cm(), cluster.configmap("drop"))
    rv = (await cluster.get(cluster.cm()))["metadata"]["resourceVersion"]
    # "Disconnected": these happen while nobody watches.
    await cluster.patch(cluster.cm("keep"), {"data": {"v": "2"}})
    await cluster.client.delete(cluster.cm("drop"))
    await cluster.create(cluster.cm(), cluster.configmap("new"))
    async with cluster.watch(cluster.cm(), resourceVersion=rv) as stream:
        events = await stream.until(3)
        await asyncio.sleep(0.3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in stream.events] == [
        ("MODIFIED", "keep"), ("DELETED", "drop"), ("ADDED", "new")]
    assert events[0]["object"]["data"] == {"v": "2"}


async def test_watch_without_resource_version_starts_with_current_state(cluster: Any) -> None:
    await cluster.create(cluster.cm(), cluster.configmap("a"))
    await cluster.create(cluster.cm(), cluster.configmap("b"))
    async with cluster.watch(cluster.widgets()) as widgets:
        assert widgets.events == []  # nothing yet: no synthetic events for an empty collection
    async with cluster.watch(cluster.cm()) as stream:
        await cluster.eventually(lambda: _names_seen(stream, {"a", "b"}), 30, "ADDED events for a and b")
    assert {e["type"] for e in stream.events} == {"ADDED"}


async def test_too_old_resource_version_is_410_gone(cluster: Any) -> None:
    start = (await cluster.get(cluster.cm()))["metadata"]["resourceVersion"]
    await cluster.create(cluster.cm(), cluster.configmap("churn", n="0"))
    for i in range(120):  # more writes than the emulator's history keeps (see conftest.HISTORY)
        await cluster.patch(cluster.cm("churn"), {"data": {"n": str(i + 1)}})
    if not cluster.emulated:
        start = "1"  # a real cluster compacts by time; resourceVersion 1 is long gone
    async with cluster.watch(cluster.cm(), resourceVersion=start) as stream:
        events = await stream.until(1)
    assert events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert status["kind"] == "Status"
    assert status["code"] == 410
    assert status["reason"] in ("Expired", "Gone")


async def test_timeout_seconds_ends_the_stream(cluster: Any) -> None:
    started = time.monotonic()
    async with cluster.watch(cluster.cm(), timeoutSeconds="1") as stream:
        await asyncio.wait_for(stream.ended.wait(), 15)
    assert time.monotonic() - started < 10


async def test_label_selector_on_watch_turns_transitions_into_added_and_deleted(cluster: Any) -> None:
    rv = (await cluster.get(cluster.cm()))["metadata"]["resourceVersion"]
    async with cluster.watch(cluster.cm(), labelSelector="team=a", resourceVersion=rv) as stream:
        await cluster.create(cluster.cm(), cluster.configmap("other", labels={"team": "b"}))
        await cluster.create(cluster.cm(), cluster.configmap("mine", labels={"team": "a"}))
        await cluster.patch(cluster.cm("other"), {"metadata": {"labels": {"team": "a"}}})
        await cluster.patch(cluster.cm("mine"), {"metadata": {"labels": {"team": "c"}}})
        events = await stream.until(3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "mine"), ("ADDED", "other"), ("DELETED", "mine")]


async def test_field_selector_on_watch(cluster: Any) -> None:
    rv = (await cluster.get(cluster.cm()))["metadata"]["resourceVersion"]
    async with cluster.watch(cluster.cm(), fieldSelector="metadata.name=target", resourceVersion=rv) as stream:
        await cluster.create(cluster.cm(), cluster.configmap("noise"))
        await cluster.create(cluster.cm(), cluster.configmap("target"))
        events = await stream.until(1)
        await asyncio.sleep(0.3)
    assert [e["object"]["metadata"]["name"] for e in stream.events] == ["target"]
    assert events[0]["type"] == "ADDED"


async def test_cluster_wide_watch_sees_all_namespaces(cluster: Any) -> None:
    rv = (await cluster.get(cluster.cm(namespace=None)))["metadata"]["resourceVersion"]
    async with cluster.watch(cluster.cm(namespace=None), resourceVersion=rv,
                             labelSelector="probe=cluster-wide") as stream:
        await cluster.create(cluster.cm(), cluster.configmap("cw", labels={"probe": "cluster-wide"}))
        events = await stream.until(1)
    assert events[0]["object"]["metadata"]["namespace"] == cluster.namespace
