"""Reading the YAML ``newapi dev`` applies, and the dev and demo overlays (pure)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from newapi_operator.dev.manifests import (
    DEMO_KEY,
    ManifestError,
    all_of,
    demo_overlay,
    dev_overlay,
    first_of,
    load_manifests,
    parse_documents,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "config" / "samples"
DEMO = "http://127.0.0.1:8090"


def test_samples_load_without_the_kustomization_and_in_apply_order() -> None:
    manifests = load_manifests([SAMPLES])
    kinds = [m.kind for m in manifests]
    assert "Kustomization" not in kinds
    assert sorted(kinds) == sorted(["Secret", "NewAPIInstance", "Channel", "Channel", "Channel", "CustomerKey"])
    assert kinds.index("Secret") < kinds.index("NewAPIInstance") < kinds.index("Channel") < kinds.index("CustomerKey")
    assert all(m.namespace == "default" for m in manifests)
    assert first_of(manifests, "NewAPIInstance") is not None
    assert [m.name for m in all_of(manifests, "CustomerKey")] == ["customer-3f2b9c1e"]


def test_kustomization_yaml_files_and_documents_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n")
    (tmp_path / "a.yml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: team}\n---\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nmetadata: {name: k}\n---\n"
    )
    (tmp_path / "notes.txt").write_text("not yaml: [")
    manifests = load_manifests([tmp_path])
    assert [(m.kind, m.namespace, m.name) for m in manifests] == [("ConfigMap", "team", "a")]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("kind: ConfigMap\nmetadata: {name: a}\n", "apiVersion and kind"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "without metadata.name"),
        ("apiVersion: v1\nkind: [", "not valid YAML"),
    ],
)
def test_bad_documents_name_the_file(text: str, needle: str) -> None:
    with pytest.raises(ManifestError, match=needle) as info:
        parse_documents(text, "x.yaml")
    assert str(info.value).startswith("x.yaml: ")


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file or directory"):
        load_manifests([tmp_path / "nope"])


def test_dev_overlay_trusts_this_machine_and_allows_an_unknown_country() -> None:
    manifests = load_manifests([SAMPLES])
    out, notes = dev_overlay(manifests)
    inst = first_of(out, "NewAPIInstance")
    assert inst is not None
    geo = inst.obj["spec"]["geo"]
    assert geo["trustedProxyCIDRs"] == ["127.0.0.1/32", "::1/128"]
    assert geo["unknownCountry"] == "allow"
    assert geo["sanctionedRegions"]["block"] == ["IR", "KP", "SY", "CU", "RU-occupied-UA"]  # untouched
    assert len(notes) == 2
    assert all(n.startswith("NewAPIInstance default/newapi: spec.geo.") for n in notes)
    # the input is not modified, and a second pass changes nothing
    assert "trustedProxyCIDRs" not in (first_of(manifests, "NewAPIInstance").obj["spec"]["geo"])  # type: ignore[union-attr]
    again, notes2 = dev_overlay(out)
    assert notes2 == []
    assert [m.obj for m in again] == [m.obj for m in out]


def test_demo_overlay_points_channels_at_the_demo_upstream() -> None:
    out, notes = demo_overlay(load_manifests([SAMPLES]), DEMO + "/")
    channels = {m.name: m.obj["spec"] for m in all_of(out, "Channel")}
    assert channels["qwen-vllm"]["endpoint"] == f"{DEMO}/qwen-vllm/v1"
    assert channels["anthropic-haiku"]["endpoint"] == f"{DEMO}/anthropic-haiku/v1"  # openai-compatible type
    assert channels["byok"]["providerEndpoints"] == {"openai": f"{DEMO}/byok/openai/v1",
                                                     "anthropic": f"{DEMO}/byok/anthropic"}
    secret = first_of(out, "Secret")
    assert secret is not None
    assert secret.obj["stringData"] == {"api-key": DEMO_KEY}
    assert any("qwen-vllm: spec.endpoint http://vllm.vllm.svc:8000/v1 -> " in n for n in notes)
    assert any(n.startswith("Secret default/anthropic-api-key: api-key") for n in notes)


def test_demo_overlay_anthropic_type_and_data_secrets() -> None:
    text = f"""
apiVersion: v1
kind: Secret
metadata: {{name: s}}
data: {{token: {base64.b64encode(b"real").decode()}, other: {base64.b64encode(b"keep").decode()}}}
---
apiVersion: newapi.openova.io/v1alpha1
kind: Channel
metadata: {{name: claude}}
spec:
  type: anthropic
  endpoint: https://api.anthropic.com
  secretRef: {{name: s, key: token}}
  models: [m]
  attestation: {{kind: commercial-contract, accountId: a, contractRef: c}}
---
apiVersion: v1
kind: Secret
metadata: {{name: unrelated}}
stringData: {{token: untouched}}
"""
    out, _ = demo_overlay(parse_documents(text, "t.yaml"), DEMO)
    by_name = {m.name: m.obj for m in out}
    assert by_name["claude"]["spec"]["endpoint"] == f"{DEMO}/claude"
    assert by_name["s"]["stringData"] == {"token": DEMO_KEY}
    assert by_name["s"]["data"] == {"other": base64.b64encode(b"keep").decode()}
    assert by_name["unrelated"]["stringData"] == {"token": "untouched"}
