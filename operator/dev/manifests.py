"""What ``newapi dev`` applies: YAML files read from directories, and the dev and demo overlays (pure).

Reading: every ``*.yaml``/``*.yml`` file of a directory (sorted; or one file), every document
that is a Kubernetes object. Kustomization files are skipped (by name, or by
``kind: Kustomization``). Objects without a namespace go to ``default``.

Overlays (applied to these objects only, never to objects created later through the API; each
change is reported as one line of text so the command can say what it rewrote):

* :func:`dev_overlay` (always): a NewAPIInstance trusts 127.0.0.1 and ::1 as its ingress proxy,
  so a local ``curl -H 'CF-IPCountry: IR'`` stands for a request from that country, and allows
  requests without a country header (locally there is no ingress and no GeoIP database; the
  compliance default ``unknownCountry: block`` would refuse every request on commercial channels);
* :func:`demo_overlay` (unless ``--no-demo-upstream``): every Channel's endpoint points at the
  demo upstream (``<demo>/<channel>/v1`` for OpenAI-format channels, ``<demo>/<channel>`` for
  ``anthropic``; BYOK provider endpoints ``<demo>/<channel>/<provider>``), and the Secrets those
  channels reference hold a placeholder key (the demo upstream accepts any key).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from newapi_operator.api.v1alpha1 import API_VERSION

Obj = dict[str, Any]

DEFAULT_NAMESPACE = "default"
KUSTOMIZATION_FILES = frozenset({"kustomization.yaml", "kustomization.yml", "kustomization"})
#: What the demo overlay writes into the Secrets of rewritten channels.
DEMO_KEY = "demo-upstream-key-not-a-secret"
#: Peers trusted as the ingress proxy in dev (curl on this machine).
DEV_TRUSTED_PROXIES = ("127.0.0.1/32", "::1/128")
#: Base URL paths of the BYOK providers (as the public APIs are laid out).
BYOK_PROVIDER_SUFFIX = {"openai": "/v1", "anthropic": "", "google": "/v1beta/openai"}
OPENAI_FORMAT_TYPES = frozenset({"vllm", "openai-compatible"})

#: Apply order: what others refer to first.
_ORDER = {"Namespace": 0, "Secret": 1, "ConfigMap": 1, "NewAPIInstance": 2, "Channel": 3, "CustomerKey": 4}


class ManifestError(Exception):
    """A file to apply is unusable; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Manifest:
    """One object to apply and the file it came from."""

    obj: Obj
    source: str

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind"))

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace") or DEFAULT_NAMESPACE)

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def ref(self) -> str:
        """``Kind namespace/name``."""
        return f"{self.kind} {self.namespace}/{self.name}"


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))
        return [p for p in files if p.name.lower() not in KUSTOMIZATION_FILES]
    if path.is_file():
        return [path]
    raise ManifestError(f"--apply {path}: no such file or directory")


def parse_documents(text: str, source: str) -> list[Manifest]:
    """The Kubernetes objects of one YAML text (Kustomization documents skipped)."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: not valid YAML: {exc}") from None
    out: list[Manifest] = []
    for doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            raise ManifestError(f"{source}: every document needs apiVersion and kind")
        if doc["kind"] == "Kustomization":
            continue
        meta = doc.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            raise ManifestError(f"{source}: {doc['kind']} without metadata.name")
        obj = copy.deepcopy(doc)
        if obj["kind"] != "Namespace":
            obj["metadata"].setdefault("namespace", DEFAULT_NAMESPACE)
        out.append(Manifest(obj, source))
    return out


def load_manifests(paths: Iterable[Path]) -> list[Manifest]:
    """Every object of ``paths`` (directories or files), in apply order."""
    out: list[Manifest] = []
    for path in paths:
        for file in _files(path):
            try:
                text = file.read_text()
            except OSError as exc:
                raise ManifestError(f"{file}: cannot read: {exc.strerror}") from None
            out += parse_documents(text, str(file))
    return sorted(out, key=lambda m: _ORDER.get(m.kind, 5))


def _is(m: Manifest, kind: str) -> bool:
    return m.kind == kind and (kind in ("Secret", "Namespace") or m.obj.get("apiVersion") == API_VERSION)


def dev_overlay(manifests: Sequence[Manifest]) -> tuple[list[Manifest], list[str]]:
    """Trust this machine as the ingress proxy and allow an unknown country (see the module docstring)."""
    out: list[Manifest] = []
    notes: list[str] = []
    for m in manifests:
        if not _is(m, "NewAPIInstance"):
            out.append(m)
            continue
        obj = copy.deepcopy(m.obj)
        geo = obj.setdefault("spec", {}).setdefault("geo", {})
        cidrs = list(geo.get("trustedProxyCIDRs") or [])
        added = [c for c in DEV_TRUSTED_PROXIES if c not in cidrs]
        if added:
            geo["trustedProxyCIDRs"] = cidrs + added
            notes.append(f"{m.ref}: spec.geo.trustedProxyCIDRs += {', '.join(added)} (a local request may "
                         "carry the country header an ingress would set, e.g. CF-IPCountry)")
        if geo.get("unknownCountry") != "allow":
            geo["unknownCountry"] = "allow"
            notes.append(f"{m.ref}: spec.geo.unknownCountry = allow (no ingress and no GeoIP database here: "
                         "requests without a country header are allowed)")
        out.append(Manifest(obj, m.source))
    return out, notes


def demo_overlay(manifests: Sequence[Manifest], demo_url: str) -> tuple[list[Manifest], list[str]]:
    """Point every Channel at the demo upstream and give their Secrets a placeholder key."""
    base = demo_url.rstrip("/")
    out: list[Manifest] = []
    notes: list[str] = []
    secrets: set[tuple[str, str, str]] = set()  # (namespace, name, key)
    for m in manifests:
        if not _is(m, "Channel"):
            out.append(m)
            continue
        obj = copy.deepcopy(m.obj)
        spec = obj.setdefault("spec", {})
        ctype = spec.get("type")
        if ctype in OPENAI_FORMAT_TYPES or ctype == "anthropic":
            new = f"{base}/{m.name}" + ("/v1" if ctype in OPENAI_FORMAT_TYPES else "")
            if spec.get("endpoint") != new:
                notes.append(f"{m.ref}: spec.endpoint {spec.get('endpoint') or '(none)'} -> {new}")
                spec["endpoint"] = new
            ref = spec.get("secretRef")
            if isinstance(ref, dict) and ref.get("name"):
                secrets.add((m.namespace, str(ref["name"]), str(ref.get("key") or "api-key")))
        elif ctype == "byok-passthrough":
            providers = [str(p) for p in spec.get("allowedProviders") or []]
            endpoints = dict(spec.get("providerEndpoints") or {})
            for provider in providers:
                url = f"{base}/{m.name}/{provider}{BYOK_PROVIDER_SUFFIX.get(provider, '')}"
                if endpoints.get(provider) != url:
                    endpoints[provider] = url
                    notes.append(f"{m.ref}: spec.providerEndpoints.{provider} -> {url}")
            if endpoints:
                spec["providerEndpoints"] = endpoints
        out.append(Manifest(obj, m.source))
    final: list[Manifest] = []
    for m in out:
        keys = sorted(k for ns, name, k in secrets if _is(m, "Secret") and (ns, name) == (m.namespace, m.name))
        if not keys:
            final.append(m)
            continue
        obj = copy.deepcopy(m.obj)
        string_data = dict(obj.get("stringData") or {})
        data = dict(obj.get("data") or {})
        for key in keys:
            data.pop(key, None)
            string_data[key] = DEMO_KEY
            notes.append(f"{m.ref}: {key} = {DEMO_KEY!r} (the demo upstream accepts any key)")
        obj["stringData"] = string_data
        if data:
            obj["data"] = data
        else:
            obj.pop("data", None)
        final.append(Manifest(obj, m.source))
    return final, notes


def first_of(manifests: Sequence[Manifest], kind: str) -> Manifest | None:
    """The first object of ``kind`` (the "sample" instance or key)."""
    return next((m for m in manifests if _is(m, kind)), None)


def all_of(manifests: Sequence[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if _is(m, kind)]
