"""An unmodified Kopf operator (``kopf run kopf_app.py``, a subprocess) against the cluster.

Covers what broke with kmock 0.8: Kopf must start watching (namespaces in discovery), add its
finalizer with a JSON patch testing ``resourceVersion``, run ``on.create`` exactly once (also
across a restart, when ``on.resume`` runs instead), see updates, keep an index, run a timer,
create children adopted with owner references (collected after the owner is gone) and finish
deletions by removing its finalizer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

APP = Path(__file__).resolve().parent / "kopf_app.py"


@contextlib.asynccontextmanager
async def kopf_operator(cluster: Any, log: Path) -> AsyncIterator[None]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kopf", "run", str(APP), "--standalone", "--namespace", cluster.namespace,
            env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            yield
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def status_of(cluster: Any, name: str) -> dict[str, Any]:
    response = await cluster.client.get(cluster.widgets(name))
    return response.json().get("status", {}) if response.status_code == 200 else {}


async def wait_status(cluster: Any, name: str, key: str, value: Any, log: Path) -> None:
    async def ok() -> bool:
        return (await status_of(cluster, name)).get(key) == value

    try:
        await cluster.eventually(ok, 60, f"{name}.status.{key} == {value!r}")
    except BaseException:
        print(await asyncio.to_thread(log.read_text))
        raise


@pytest.mark.timeout(240)
async def test_kopf_operator_lifecycle(cluster: Any, tmp_path: Path) -> None:
    log = tmp_path / "kopf.log"
    async with kopf_operator(cluster, log):
        await cluster.create(cluster.widgets(), cluster.widget("w1", size=2))
        await cluster.create(cluster.widgets(), cluster.widget("w2", size=1))
        await wait_status(cluster, "w1", "created", {"child": "w1-child"}, log)
        owner = await cluster.get(cluster.widgets("w1"))
        assert "conformance.newapi.test/kopf" in owner["metadata"]["finalizers"]
        child = await cluster.get(cluster.cm("w1-child"))
        assert child["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
        await wait_status(cluster, "w1", "ticked", True, log)
        await cluster.patch(cluster.widgets("w1"), {"spec": {"size": 3}})
        await wait_status(cluster, "w1", "size", 3, log)
        assert (await status_of(cluster, "w1"))["sameColor"] == 2  # the index holds both red widgets

    async with kopf_operator(cluster, log):  # a restart: resume, not create again
        await wait_status(cluster, "w1", "resumed", True, log)
        assert (await status_of(cluster, "w1"))["creates"] == 1
        assert (await cluster.client.delete(cluster.widgets("w1"))).status_code == 200
        await cluster.gone(cluster.widgets("w1"))
        assert (await cluster.client.get(cluster.cm("w1-deleted"))).status_code == 200
        await cluster.gone(cluster.cm("w1-child"))

    text = log.read_text()
    assert "Handler 'created' succeeded" in text
    assert "APIServerError" not in text, text[-5000:]
    assert "Traceback" not in text, text[-5000:]
