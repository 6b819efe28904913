"""Server-side table output (``meta.k8s.io/v1`` Table), as ``kubectl get`` negotiates it.

Three layers: the pure parts of ``newapi_operator.apiserver.table`` (negotiation, JSONPath,
durations, cell typing); conformance tests over HTTP with the ``cluster`` fixture (they hold on
a real cluster too: the Widget CRD's only printer column is ``Size``, so no ``Age``); and
kubectl v1.32 printing the product CRDs' printer columns against the emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from newapi_operator.apiserver import LocalAPIServer
from newapi_operator.apiserver.jsonpath import find, parse_jsonpath
from newapi_operator.apiserver.table import (
    crd_printer,
    format_label_selector,
    go_float,
    human_duration,
    negotiate,
    print_value,
    typed_cell,
)
from newapi_operator.crdgen import build_crds

#: What kubectl v1.32 sends for human-readable output (get, get NAME, get -w).
KUBECTL_ACCEPT = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
                  "g=meta.k8s.io,application/json")
TABLE = {"Accept": KUBECTL_ACCEPT}
KUBECTL = shutil.which("kubectl")
FIXTURES = Path(__file__).resolve().parents[1] / "operator" / "fixtures" / "valid"

# ------------------------------------------------------------------------------------------------
# Pure parts
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("accept", "expected"), [
    (KUBECTL_ACCEPT, "meta.k8s.io/v1"),
    ("application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json", "meta.k8s.io/v1beta1"),
    ("application/json", None),
    (None, None),
    ("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io",
     "meta.k8s.io/v1"),
    ("application/json;as=Table;v=v2;g=meta.k8s.io,application/json", None),
    ("application/json;q=0.5,application/json;as=Table;v=v1;g=meta.k8s.io", "meta.k8s.io/v1"),
    ("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json", None),
])
def test_negotiation(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize(("seconds", "text"), [
    (-5, "<invalid>"), (-1.5, "0s"), (0, "0s"), (119.9, "119s"), (120, "2m"), (125, "2m5s"), (600, "10m"),
    (3 * 3600 - 1, "179m"), (3 * 3600, "3h"), (3.5 * 3600, "3h30m"), (8 * 3600, "8h"), (47 * 3600, "47h"),
    (48 * 3600, "2d"), (50 * 3600, "2d2h"), (8 * 86400, "8d"), (729 * 86400, "729d"), (730 * 86400, "2y"),
    (735 * 86400, "2y5d"), (8 * 365 * 86400, "8y"),
])
def test_human_duration_matches_apimachinery(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


OBJ: dict[str, Any] = {
    "metadata": {"name": "x", "annotations": {"a.b/c": "dotted"}},
    "spec": {"replicas": 3, "ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 81}]},
    "status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]},
}


@pytest.mark.parametrize(("path", "values"), [
    (".spec.replicas", [3]),
    (".spec.ports[1].port", [81]),
    (".spec.ports[-1].name", ["admin"]),
    (".spec.ports[5].name", []),
    (".spec.ports[*].port", [80, 81]),
    (".spec.ports[0:1].name", ["http"]),
    ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
    (".status.conditions[?(@.type == 'Synced')].status", ["False"]),
    ('.status.conditions[?(@.type!="Ready")].type', ["Synced"]),
    (".spec.ports[?(@.port > 80)].name", ["admin"]),
    (".spec.ports[?(@.name)].port", [80, 81]),
    (".metadata.annotations['a.b/c']", ["dotted"]),
    ("{.metadata.name}", ["x"]),
    ("..port", [80, 81]),
    (".spec.missing.deeper", []),
    (".spec.replicas.notamap", []),
])
def test_jsonpath_subset(path: str, values: list[Any]) -> None:
    assert find(parse_jsonpath(path), OBJ) == values


@pytest.mark.parametrize(("value", "text"), [
    (3.5, "3.5"), (100.0, "100"), (123456.0, "123456"), (1e6, "1e+06"), (1234567.0, "1.234567e+06"),
    (0.0001, "0.0001"), (0.00001, "1e-05"), (-2.25, "-2.25"),
])
def test_floats_print_as_go_does(value: float, text: str) -> None:
    assert go_float(value) == text


def test_string_cells_print_as_jsonpath_does() -> None:
    assert print_value("s") == "s"
    assert print_value(True) == "true"
    assert print_value(7) == "7"
    assert print_value({"b": 1, "a": "<x>"}) == '{"a":"\\u003cx\\u003e","b":1}'
    assert print_value([1.0, "y"]) == '[1,"y"]'


def test_typed_cells_keep_json_types_or_are_null() -> None:
    now = 1_000_000.0
    assert typed_cell("integer", 3.9, now) == 3
    assert typed_cell("integer", "3", now) is None
    assert typed_cell("integer", True, now) is None
    assert typed_cell("number", 2, now) == 2.0
    assert typed_cell("boolean", False, now) is False
    assert typed_cell("date", "1970-01-12T13:46:37Z", now) == "3s"  # now is 1970-01-12T13:46:40Z
    assert typed_cell("date", "1970-01-12T13:46:35.500+00:00", now) == "4s"
    assert typed_cell("date", "1970-01-12T15:46:37+02:00", now) == "3s"
    assert typed_cell("date", "1970-01-12T13:43:20Z", now) == "3m20s"
    assert typed_cell("date", "yesterday", now) == "<invalid>"


def test_crd_printer_columns_and_defaults() -> None:
    ready = '.status.conditions[?(@.type=="Ready")].status'
    printer = crd_printer(({"name": "Ready", "type": "string", "jsonPath": ready},
                           {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "priority": 1,
                            "description": "How many.", "format": "int32"}))
    assert [(c["name"], c["type"], c["format"], c["priority"]) for c in printer.columns] == [
        ("Name", "string", "name", 0), ("Ready", "string", "", 0), ("Replicas", "integer", "int32", 1)]
    assert printer.columns[2]["description"] == "How many."
    assert printer.cells(OBJ, 0.0) == ["x", "True", 3]
    assert printer.cells({"metadata": {"name": "bare"}}, 0.0) == ["bare", None, None]
    default = crd_printer(())
    assert [(c["name"], c["type"]) for c in default.columns] == [("Name", "string"), ("Age", "date")]
    broken = crd_printer(({"name": "A", "type": "string", "jsonPath": ".spec.replicas"},
                          {"name": "B", "type": "string", "jsonPath": ".spec[unclosed"},
                          {"name": "C", "type": "string", "jsonPath": ".spec.replicas"}))
    assert [c["name"] for c in broken.columns] == ["Name", "A"]  # the real server stops at a bad column


def test_label_selector_formatting() -> None:
    selector = {"matchLabels": {"b": "2", "a": "1"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                     {"key": "x", "operator": "DoesNotExist"}]}
    assert format_label_selector(selector) == "a=1,b=2,env in (dev,prod),!x"
    assert format_label_selector({}) == "<none>"


# ------------------------------------------------------------------------------------------------
# Conformance over HTTP (emulator or the cluster of NEWAPI_TEST_KUBECONFIG)
# ------------------------------------------------------------------------------------------------


async def _table(cluster: Any, path: str, headers: dict[str, str] | None = None, **params: Any) -> dict[str, Any]:
    response = await cluster.client.get(path, headers=headers or TABLE, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_custom_resource_list_as_table(cluster: Any) -> None:
    await cluster.create(cluster.widgets(), cluster.widget("w1", size=3))
    await cluster.create(cluster.widgets(), cluster.widget("w2", size=5))
    table = await _table(cluster, cluster.widgets())
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert table["metadata"]["resourceVersion"]
    name, size = table["columnDefinitions"]
    assert {k: name[k] for k in ("name", "type", "format", "priority")} == {
        "name": "Name", "type": "string", "format": "name", "priority": 0}
    assert name["description"].startswith("Name must be unique within a namespace.")
    assert size == {"name": "Size", "type": "integer", "format": "", "priority": 0,
                    "description": "Custom resource definition column (in JSONPath format): .spec.size"}
    assert [row["cells"] for row in table["rows"]] == [["w1", 3], ["w2", 5]]
    partial = table["rows"][0]["object"]
    assert (partial["kind"], partial["apiVersion"]) == ("PartialObjectMetadata", "meta.k8s.io/v1")
    assert partial["metadata"]["name"] == "w1"
    assert partial["metadata"]["uid"]
    assert set(partial) == {"kind", "apiVersion", "metadata"}
    plain = await cluster.get(cluster.widgets())  # without the Accept header: the list as ever
    assert plain["kind"] == "WidgetList"


async def test_single_object_table_and_include_object(cluster: Any) -> None:
    created = await cluster.create(cluster.widgets(), cluster.widget("one", size=4))
    table = await _table(cluster, cluster.widgets("one"))
    assert [row["cells"] for row in table["rows"]] == [["one", 4]]
    assert table["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    full = await _table(cluster, cluster.widgets("one"), includeObject="Object")
    embedded = full["rows"][0]["object"]
    assert (embedded["kind"], embedded["spec"]["size"]) == ("Widget", 4)
    bare = await _table(cluster, cluster.widgets(), includeObject="None")
    assert bare["rows"][0].get("object") is None
    beta = await _table(cluster, cluster.widgets("one"),
                        headers={"Accept": "application/json;as=Table;v=v1beta1;g=meta.k8s.io"})
    assert beta["apiVersion"] == "meta.k8s.io/v1beta1"
    assert beta["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"
    wrong = await cluster.client.get(cluster.widgets(), headers=TABLE, params={"includeObject": "Everything"})
    assert wrong.status_code == 400, wrong.text
    assert wrong.json()["reason"] == "BadRequest"


async def test_table_pages_like_the_list(cluster: Any) -> None:
    for name in ("p1", "p2", "p3"):
        await cluster.create(cluster.widgets(), cluster.widget(name))
    first = await _table(cluster, cluster.widgets(), limit=2)
    assert [row["cells"][0] for row in first["rows"]] == ["p1", "p2"]
    assert first["metadata"]["continue"]
    rest = await _table(cluster, cluster.widgets(), limit=2, **{"continue": first["metadata"]["continue"]})
    assert [row["cells"][0] for row in rest["rows"]] == ["p3"]


async def test_builtin_kind_table(cluster: Any) -> None:
    await cluster.create(cluster.cm(), cluster.configmap("cfg", a="1", b="2"))
    table = await _table(cluster, cluster.cm(), fieldSelector="metadata.name=cfg")
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    (row,) = table["rows"]
    assert row["cells"][:2] == ["cfg", 2]
    assert re.fullmatch(r"\d+s", row["cells"][2]), row["cells"]


async def test_watch_as_table_sends_columns_once(cluster: Any) -> None:
    rv = (await _table(cluster, cluster.widgets()))["metadata"]["resourceVersion"]
    events: list[dict[str, Any]] = []

    async def consume() -> None:
        params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "60"}
        timeout = httpx.Timeout(30.0, read=None)
        async with cluster.client.stream("GET", cluster.widgets(), params=params, headers=TABLE,
                                         timeout=timeout) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.strip():
                    events.append(json.loads(line))

    task = asyncio.create_task(consume())
    try:
        await cluster.create(cluster.widgets(), cluster.widget("seen", size=2))
        await cluster.patch(cluster.widgets("seen"), {"spec": {"size": 7}})

        async def two() -> bool:
            assert not task.done() or task.exception() is None, task.exception()
            return len(events) >= 2

        await cluster.eventually(two, 30, "two watch events")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await task
    first, second = events[:2]
    assert [first["type"], second["type"]] == ["ADDED", "MODIFIED"]
    assert first["object"]["kind"] == "Table"
    assert [c["name"] for c in first["object"]["columnDefinitions"]] == ["Name", "Size"]
    assert not second["object"].get("columnDefinitions")  # headers only with the first event
    assert [r["cells"] for r in first["object"]["rows"]] == [["seen", 2]]
    assert [r["cells"] for r in second["object"]["rows"]] == [["seen", 7]]


# ------------------------------------------------------------------------------------------------
# kubectl
# ------------------------------------------------------------------------------------------------


async def kubectl(kubeconfig: Path, *args: str) -> str:
    if KUBECTL is None:
        pytest.fail("kubectl is not installed (expected /usr/bin/kubectl v1.32)")
    proc = await asyncio.create_subprocess_exec(KUBECTL, "--kubeconfig", str(kubeconfig), *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"kubectl {' '.join(args)} failed: {err.decode()}"
    return out.decode()


def parse_tables(output: str) -> list[list[dict[str, str]]]:
    """kubectl's tables (blank-line separated) as rows of header -> cell, cut at header positions."""
    tables = []
    for block in output.strip().split("\n\n"):
        header, *lines = block.splitlines()
        matches = list(re.finditer(r"\S+(?: \S+)*", header))  # "CREATED AT" is one header
        starts, names = [m.start() for m in matches], [m.group(0) for m in matches]
        rows = []
        for line in lines:
            bounds = [*starts[1:], None]
            rows.append({name: line[start:end].strip() for name, start, end in zip(names, starts, bounds, strict=True)})
        tables.append(rows)
    return tables


async def test_kubectl_prints_the_crd_columns(cluster: Any) -> None:
    await cluster.create(cluster.widgets(), cluster.widget("kw", size=6))
    output = await kubectl(cluster.kubeconfig, "--namespace", cluster.namespace, "get", "widgets")
    assert output.splitlines()[0].split() == ["NAME", "SIZE"]  # the CRD lists no Age column
    assert parse_tables(output) == [[{"NAME": "kw", "SIZE": "6"}]]


NAMESPACE = "tenant-a"
PLURALS = {"NewAPIInstance": "newapiinstances", "Channel": "channels", "CustomerKey": "customerkeys"}


def _fixture(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())
    return obj


@pytest.fixture
async def product(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    """The emulator with the product's CRDs, namespace tenant-a and a kubeconfig."""
    async with LocalAPIServer(crds=build_crds()) as server, httpx.AsyncClient(base_url=server.url) as http:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        created = await http.post("/api/v1/namespaces", json={
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        assert created.status_code == 201, created.text
        yield http, kubeconfig
        assert server.errors == []


async def _create(http: httpx.AsyncClient, obj: dict[str, Any], status: dict[str, Any] | None = None) -> None:
    path = f"/apis/newapi.openova.io/v1alpha1/namespaces/{NAMESPACE}/{PLURALS[obj['kind']]}"
    created = await http.post(path, json=obj)
    assert created.status_code == 201, created.text
    if status is not None:
        patched = await http.patch(f"{path}/{obj['metadata']['name']}/status", content=json.dumps({"status": status}),
                                   headers={"Content-Type": "application/merge-patch+json"})
        assert patched.status_code == 200, patched.text


def _ready(status: str) -> dict[str, Any]:
    return {"conditions": [{"type": "Synced", "status": "False", "reason": "Other"},
                           {"type": "Ready", "status": status, "reason": "Checked"}]}


@pytest.mark.timeout(120)
async def test_kubectl_get_product_kinds_shows_printer_columns(product: tuple[httpx.AsyncClient, Path]) -> None:
    http, kubeconfig = product
    await _create(http, _fixture("instance-ha"), {**_ready("True"), "routingTableVersion": "rt-42"})
    await _create(http, _fixture("channel-openai"), _ready("False"))
    await _create(http, _fixture("customerkey"), {**_ready("True"), "keyPrefix": "nk-7f3a"})

    output = await kubectl(kubeconfig, "--namespace", NAMESPACE, "get", "nai,nch,ck")
    instances, channels, keys = parse_tables(output)
    assert instances == [{"NAME": "newapiinstance.newapi.openova.io/inst-ha", "REPLICAS": "3", "READY": "True",
                          "ROUTES": "rt-42", "AGE": instances[0]["AGE"]}]
    assert re.fullmatch(r"\d+s", instances[0]["AGE"])
    assert channels == [{"NAME": "channel.newapi.openova.io/ch-openai", "TYPE": "openai-compatible",
                         "ATTESTATION": "commercial-contract", "PRIORITY": "0", "READY": "False",
                         "AGE": channels[0]["AGE"]}]
    assert keys == [{"NAME": "customerkey.newapi.openova.io/key-pro", "INSTANCE": "inst",
                     "CUSTOMER": "0b6f3d2e-1c1a-4f5e-9d7b-8a2c4e6f1a3b", "TIER": "pro", "PREFIX": "nk-7f3a",
                     "READY": "True", "AGE": keys[0]["AGE"]}]

    wide = parse_tables(await kubectl(kubeconfig, "--namespace", NAMESPACE, "get", "nai,nch", "-o", "wide"))
    assert wide[0][0]["HOST"] == "api.example.com"  # priority-1 columns only with -o wide
    assert wide[1][0]["ENDPOINT"] == "https://api.openai.com/v1"
    single = parse_tables(await kubectl(kubeconfig, "--namespace", NAMESPACE, "get", "ck", "key-pro"))
    assert single[0][0]["PREFIX"] == "nk-7f3a"


@pytest.mark.timeout(120)
async def test_kubectl_watch_prints_rows_of_table_events(product: tuple[httpx.AsyncClient, Path]) -> None:
    http, kubeconfig = product
    await _create(http, _fixture("instance"), _ready("False"))
    if KUBECTL is None:
        pytest.fail("kubectl is not installed (expected /usr/bin/kubectl v1.32)")
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(kubeconfig), "--namespace", NAMESPACE, "get", "nai", "-w",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = proc.stdout, proc.stderr
    assert stdout is not None
    assert stderr is not None
    lines: list[str] = []

    async def line_with(text: str) -> str:
        deadline = time.monotonic() + 60
        while not any(text in line for line in lines):
            if time.monotonic() > deadline:
                pytest.fail(f"kubectl get -w printed no line with {text!r}: {lines}")
            raw = await asyncio.wait_for(stdout.readline(), max(0.1, deadline - time.monotonic()))
            if not raw:
                pytest.fail(f"kubectl get -w ended: {lines}, {(await stderr.read()).decode()}")
            lines.append(raw.decode())
        return next(line for line in lines if text in line)

    try:
        assert (await line_with("NAME")).split() == ["NAME", "REPLICAS", "READY", "ROUTES", "AGE"]
        assert (await line_with("inst ")).split()[:3] == ["inst", "1", "False"]
        second = _fixture("instance")
        second["metadata"]["name"] = "inst-two"
        await _create(http, second, {**_ready("True"), "routingTableVersion": "rt-2"})
        assert "rt-2" in await line_with("rt-2")  # the status update, printed with the columns of the first event
    finally:
        proc.terminate()
        await proc.wait()
    assert sum("NAME" in line for line in lines) == 1
