"""The resource types the local API server serves: built-in kinds and CRD-defined kinds.

A :class:`ResourceType` holds what discovery advertises (kind, plural, short names, scope,
subresources, verbs) plus what the server needs to treat objects right: whether the kind
carries ``metadata.generation``, its structural schema and CEL rules (custom resources),
and the list merge keys strategic merge patch uses (built-in kinds).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceType:
    """One served ``group/version/plural``."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    #: ``status`` when the kind has a status subresource (status only via ``/status``).
    subresources: tuple[str, ...] = ()
    #: Whether ``metadata.generation`` is kept (1 at creation, bumped on spec changes).
    has_generation: bool = False
    #: Custom resources: the version's ``openAPIV3Schema`` (None for built-in kinds).
    schema: dict[str, Any] | None = None
    #: Custom resources: the CRD's ``metadata.name`` (``plural.group``); "" for built-ins.
    crd_name: str = ""
    #: Whether this version is the storage version (custom resources).
    storage: bool = True
    #: Custom resources: ``additionalPrinterColumns`` (for table output in kubectl).
    printer_columns: tuple[dict[str, Any], ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)

    @property
    def custom(self) -> bool:
        return self.schema is not None

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def discovery_entries(self) -> list[dict[str, Any]]:
        """The ``APIResourceList.resources`` entries for this type and its subresources."""
        main: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(VERBS),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        entries = [main]
        for sub in self.subresources:
            entries.append(
                {
                    "name": f"{self.plural}/{sub}",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        return entries


def _builtin(
    group: str,
    version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    status: bool = False,
    generation: bool = False,
    categories: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=short,
        categories=categories,
        subresources=("status",) if status else (),
        has_generation=generation,
    )


#: Built-in kinds the product (and Kopf) use. Objects of these kinds are stored as given:
#: no schema validation beyond metadata (names, labels) and a few kind rules (Secret data).
BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _builtin("", "v1", "namespaces", "Namespace", namespaced=False, short=("ns",), status=True),
    _builtin("", "v1", "configmaps", "ConfigMap", short=("cm",)),
    _builtin("", "v1", "secrets", "Secret"),
    _builtin("", "v1", "services", "Service", short=("svc",), status=True, categories=("all",)),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", short=("sa",)),
    _builtin("", "v1", "events", "Event", short=("ev",)),
    _builtin("apps", "v1", "deployments", "Deployment", short=("deploy",), status=True, generation=True,
             categories=("all",)),
    _builtin("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    _builtin("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    _builtin("networking.k8s.io", "v1", "ingresses", "Ingress", short=("ing",), status=True, generation=True),
    _builtin("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short=("netpol",), generation=True),
    _builtin("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",), status=True,
             generation=True),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease"),
    _builtin("events.k8s.io", "v1", "events", "Event", short=("ev",)),
    _builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
             namespaced=False, short=("crd", "crds"), status=True, generation=True),
)

#: Kopf's peering CRDs, installed at start-up as on a cluster prepared for Kopf operators.
KOPF_PEERING_CRDS: tuple[dict[str, Any], ...] = tuple(
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    for plural, kind, scope in (
        ("kopfpeerings", "KopfPeering", "Namespaced"),
        ("clusterkopfpeerings", "ClusterKopfPeering", "Cluster"),
    )
)


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The served versions of a CRD manifest (``apiextensions.k8s.io/v1``) as resource types."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    plural = names.get("plural", "")
    kind = names.get("kind", "")
    singular = names.get("singular") or kind.lower()
    namespaced = spec.get("scope", "Namespaced") == "Namespaced"
    top_schema = (spec.get("validation") or {}).get("openAPIV3Schema")
    result: list[ResourceType] = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        schema = ((version.get("schema") or {}).get("openAPIV3Schema")) or top_schema or {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True}
        subresources = tuple(sorted((version.get("subresources") or spec.get("subresources") or {}).keys()))
        result.append(
            ResourceType(
                group=group,
                version=version.get("name", ""),
                plural=plural,
                kind=kind,
                singular=singular,
                namespaced=namespaced,
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=tuple(s for s in subresources if s == "status"),  # no scale subresource
                has_generation=True,
                schema=schema,
                crd_name=(crd.get("metadata") or {}).get("name", ""),
                storage=bool(version.get("storage", False)),
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            )
        )
    return result


@dataclass
class Registry:
    """Which resource types are served, indexed for the HTTP router and discovery."""

    _types: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)

    @classmethod
    def with_builtins(cls) -> Registry:
        registry = cls()
        for rtype in BUILTIN_TYPES:
            registry.add(rtype)
        return registry

    def add(self, rtype: ResourceType) -> None:
        self._types[rtype.key] = rtype

    def remove_crd(self, crd_name: str) -> list[ResourceType]:
        gone = [t for t in self._types.values() if t.crd_name == crd_name]
        for rtype in gone:
            del self._types[rtype.key]
        return gone

    def replace_crd(self, crd_name: str, types: Iterable[ResourceType]) -> None:
        self.remove_crd(crd_name)
        for rtype in types:
            self.add(rtype)

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(sorted(self._types.values(), key=lambda t: t.key))

    def groups(self) -> dict[str, list[str]]:
        """Group name -> served versions, the preferred (highest by Kubernetes version order) first."""
        out: dict[str, list[ResourceType]] = {}
        for rtype in self:
            out.setdefault(rtype.group, []).append(rtype)
        return {group: sorted({t.version for t in types}, key=_version_priority) for group, types in out.items()}

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self if t.group == group and t.version == version]


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering: GA before beta before alpha, higher numbers first."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not match:
        return (3, 0, 0, version)
    major = int(match.group(1))
    stage = {"None": 0, "beta": 1, "alpha": 2}[str(match.group(2))]
    minor = int(match.group(3) or 0)
    return (stage, -major, -minor, version)
