"""kubectl (v1.32) against the cluster through the kubeconfig writer.

Verbs that work against the emulator: get (incl. -o json/yaml/name, -l, short names), create -f,
apply -f (client-side and --server-side), patch (strategic, merge, json), label, annotate,
delete, replace -f, api-resources. Pass ``--validate=false`` to create/apply/replace: kubectl's
schema validation downloads OpenAPI documents, which the emulator does not serve.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

KUBECTL = shutil.which("kubectl")


async def kubectl(cluster: Any, *args: str, ok: bool = True) -> str:
    if KUBECTL is None:
        pytest.fail("kubectl is not installed (expected /usr/bin/kubectl v1.32)")
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(cluster.kubeconfig), "--namespace", cluster.namespace, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    if ok:
        assert proc.returncode == 0, f"kubectl {' '.join(args)} failed: {err.decode()}"
    else:
        assert proc.returncode != 0, f"kubectl {' '.join(args)} should have failed: {out.decode()}"
        return err.decode()
    return out.decode()


@pytest.mark.timeout(180)
async def test_kubectl_verbs(cluster: Any, tmp_path: Path) -> None:
    widget_file = tmp_path / "widget.yaml"
    widget_file.write_text(yaml.safe_dump(cluster.widget("kw", size=2)))
    cm_file = tmp_path / "cm.yaml"
    cm_file.write_text(yaml.safe_dump(cluster.configmap("kc", a="1")))

    assert cluster.namespace in await kubectl(cluster, "get", "namespaces", "-o", "name")
    assert "widgets" in await kubectl(cluster, "api-resources", "--api-group=conformance.newapi.test")

    assert "created" in await kubectl(cluster, "apply", "--validate=false", "-f", str(widget_file))
    assert "created" in await kubectl(cluster, "create", "--validate=false", "-f", str(cm_file))
    listed = json.loads(await kubectl(cluster, "get", "wdg", "-o", "json"))
    assert [i["metadata"]["name"] for i in listed["items"]] == ["kw"]
    assert listed["items"][0]["spec"]["color"] == "red"  # defaulted by the server

    await kubectl(cluster, "label", "configmap", "kc", "team=a")
    await kubectl(cluster, "annotate", "configmap", "kc", "note=hi")
    assert (await kubectl(cluster, "get", "cm", "-l", "team=a", "-o", "name")).split() == ["configmap/kc"]
    await kubectl(cluster, "patch", "configmap", "kc", "-p", '{"data":{"b":"2"}}')
    await kubectl(cluster, "patch", "configmap", "kc", "--type=json", "-p",
                  '[{"op":"replace","path":"/data/a","value":"10"}]')
    await kubectl(cluster, "patch", "widget", "kw", "--type=merge", "-p", '{"spec":{"size":4}}')
    cm = yaml.safe_load(await kubectl(cluster, "get", "cm", "kc", "-o", "yaml"))
    assert cm["data"] == {"a": "10", "b": "2"}
    assert cm["metadata"]["annotations"]["note"] == "hi"

    widget_file.write_text(yaml.safe_dump(cluster.widget("kw", size=5, tags=["x"])))
    await kubectl(cluster, "apply", "--validate=false", "-f", str(widget_file))
    assert json.loads(await kubectl(cluster, "get", "widget", "kw", "-o", "json"))["spec"]["size"] == 5
    await kubectl(cluster, "apply", "--server-side", "--force-conflicts", "--validate=false", "-f", str(widget_file))

    cm_file.write_text(yaml.safe_dump(cluster.configmap("kc", z="26")))
    await kubectl(cluster, "replace", "--validate=false", "-f", str(cm_file))
    assert json.loads(await kubectl(cluster, "get", "cm", "kc", "-o", "json"))["data"] == {"z": "26"}

    bad = cluster.widget("bad", size=50)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    error = await kubectl(cluster, "apply", "--validate=false", "-f", str(tmp_path / "bad.yaml"), ok=False)
    assert "spec.size" in error
    assert "NotFound" in await kubectl(cluster, "get", "cm", "absent", ok=False)

    await kubectl(cluster, "delete", "widget", "kw")
    await kubectl(cluster, "delete", "-f", str(cm_file))
    assert (await kubectl(cluster, "get", "widgets", "-o", "name")).strip() == ""
    await cluster.gone(cluster.widgets("kw"))
    await cluster.gone(cluster.cm("kc"))
