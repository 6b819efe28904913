"""Server-side table output (``meta.k8s.io/v1`` ``Table``), as ``kubectl get`` asks for it.

kubectl sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;
v=v1beta1;g=meta.k8s.io,application/json`` on get/list/watch and prints the columns the server
computes. This module is the pure part: content negotiation, the ``includeObject`` option, the
column definitions and cells of each kind, and the Table bodies, as the Kubernetes API server
builds them:

- custom resources: ``Name`` plus the CRD version's ``additionalPrinterColumns`` (or a single
  ``Age`` column when it has none), cells found by JSONPath (the subset CRDs use: fields,
  ``['quoted']`` fields, indexes, slices, ``*``, ``..``, filters ``[?(@.type=="Ready")]``);
  only the first match is shown; ``string`` cells are printed as JSONPath prints them,
  ``integer``/``number``/``boolean`` cells keep their JSON type (null when the value has
  another type), ``date`` cells are sent as the age (``5m``; ``<invalid>`` when not RFC 3339);
- built-in kinds: the columns of Kubernetes' printers for Namespace, ConfigMap, Secret,
  ServiceAccount, Service, Deployment, Role/ClusterRole, RoleBinding/ClusterRoleBinding and
  Lease (descriptions abbreviated); CustomResourceDefinitions get the generic ``Name``/``Created
  At`` columns (the timestamp itself); every other built-in kind ``Name`` and ``Age``;
- rows carry the object as ``PartialObjectMetadata`` (default, ``includeObject=Metadata``), in
  full (``Object``) or not at all (``None``); watch events carry one-row Tables whose column
  definitions are sent with the first event only (as the real server saves bandwidth).
"""

from __future__ import annotations

import datetime
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .errors import bad_request
from .jsonpath import JSONPathError, Step, find, parse_jsonpath
from .resources import ResourceType

Obj = dict[str, Any]
Cells = list[Any]

META_GROUP = "meta.k8s.io"
TABLE_VERSIONS = ("v1", "v1beta1")
INCLUDE_OBJECT = ("Metadata", "Object", "None")

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
CREATED_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
    "guaranteed to be set in happens-before order across separate operations. Clients may not set this value. "
    "It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. "
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)


# ------------------------------------------------------------------------------------------------
# Negotiation and options
# ------------------------------------------------------------------------------------------------


def negotiate(accept: str | None) -> str | None:
    """The Table ``apiVersion`` the Accept header asks for first, or None for plain objects.

    Clauses are taken by quality (``q``), then in order; the first one this server can answer
    decides: a JSON Table of ``meta.k8s.io`` v1 or v1beta1, or plain JSON. Clauses it cannot
    answer (protobuf, other ``as=`` targets) are skipped.
    """
    clauses: list[tuple[float, int, str, dict[str, str]]] = []
    for index, clause in enumerate((accept or "").split(",")):
        media, *raw_params = [part.strip() for part in clause.split(";")]
        if not media:
            continue
        params = {}
        for raw in raw_params:
            key, _, value = raw.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 1.0
        clauses.append((-quality, index, media.lower(), params))
    for _, _, media, params in sorted(clauses):
        if media not in ("application/json", "application/*", "*/*"):
            continue
        target = params.get("as")
        if target is None:
            return None
        if target == "Table" and params.get("g") == META_GROUP and params.get("v") in TABLE_VERSIONS:
            return f"{META_GROUP}/{params['v']}"
    return None


def include_object(query: Mapping[str, str]) -> str:
    """The ``includeObject`` table option (default ``Metadata``); 400 for other values, as Kubernetes."""
    value = query.get("includeObject") or "Metadata"
    if value not in INCLUDE_OBJECT:
        raise bad_request(
            f'Unable to convert to Table as requested: includeObject: Invalid value: "{value}": '
            "must be 'Metadata', 'Object', 'None', or empty"
        )
    return value


# ------------------------------------------------------------------------------------------------
# Time
# ------------------------------------------------------------------------------------------------

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def parse_time(value: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (as Go's ``time.RFC3339`` parses); None if invalid."""
    if not _RFC3339.fullmatch(value):
        return None
    text = value.upper().replace("Z", "+00:00")
    date, _, rest = text.partition("T")
    clock, fraction = rest[:8], ""
    zone = rest[8:]
    if zone.startswith("."):
        digits = re.match(r"\.(\d+)", zone)
        assert digits is not None
        fraction, zone = digits.group(1), zone[digits.end():]
    try:
        parsed = datetime.datetime.fromisoformat(f"{date}T{clock}{zone}")
    except ValueError:
        return None
    return parsed.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


def human_duration(seconds: float) -> str:
    """``k8s.io/apimachinery/pkg/util/duration.HumanDuration``: ~2-3 significant figures."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if rest == 0 else f"{hours // 24 // 365}y{rest}d"
    return f"{hours // 24 // 365}y"


def age(obj: Obj, now: float) -> str:
    """The Age cell of built-in printers: time since ``metadata.creationTimestamp``."""
    created = parse_time(str((obj.get("metadata") or {}).get("creationTimestamp") or ""))
    return "<unknown>" if created is None else human_duration(now - created)


def created_at(obj: Obj) -> str:
    """The ``Created At`` cell of the generic printer: the RFC 3339 UTC creation time."""
    created = parse_time(str((obj.get("metadata") or {}).get("creationTimestamp") or ""))
    if created is None:
        return "0001-01-01T00:00:00Z"
    return datetime.datetime.fromtimestamp(int(created), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------------
# Printing values as Go does
# ------------------------------------------------------------------------------------------------


def go_float(value: float) -> str:
    """``fmt.Sprint(float64)``: shortest digits, exponent form below 1e-4 and from 1e6 (Go's %g)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # digits before the decimal point
    exp = point - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{prefix}{digits}{'0' * (point - len(digits))}"
    return f"{prefix}{digits[:point]}.{digits[point:]}"


def _go_json(value: Any) -> str:
    """``json.Marshal`` of a decoded JSON value: sorted keys, compact, HTML characters escaped."""

    def plain(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: plain(v) for k, v in item.items()}
        if isinstance(item, list):
            return [plain(v) for v in item]
        if isinstance(item, float) and item.is_integer() and abs(item) < 1e21:
            return int(item)
        return item

    text = json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def print_value(value: Any) -> str | None:
    """A value as client-go's JSONPath ``PrintResults`` prints it (a ``string`` column's cell)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    return _go_json(value)


def typed_cell(column_type: str, value: Any, now: float) -> Any:
    """A non-``string`` column's cell: the value when it has the column's type, else null."""
    if value is None:
        return None
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if column_type == "integer" and is_number:
        return int(value)
    if column_type == "number" and is_number:
        return float(value)
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        stamp = parse_time(value)
        return "<invalid>" if stamp is None else human_duration(now - stamp)
    return None


# ------------------------------------------------------------------------------------------------
# Printers: columns and cells per kind
# ------------------------------------------------------------------------------------------------


def column(name: str, type_: str = "string", description: str = "", *, format_: str = "",
           priority: int = 0) -> Obj:
    """A ``TableColumnDefinition`` (every field is always sent)."""
    return {"name": name, "type": type_, "format": format_, "description": description, "priority": priority}


NAME_COLUMN = column("Name", "string", NAME_DESCRIPTION, format_="name")
AGE_COLUMN = column("Age", "string", CREATED_DESCRIPTION)


@dataclass(frozen=True)
class Printer:
    """The columns of a kind and the function computing a row's cells."""

    columns: tuple[Obj, ...]
    cells: Callable[[Obj, float], Cells]


@dataclass(frozen=True)
class _CrdColumn:
    type: str
    path: tuple[Step, ...]


def crd_printer(printer_columns: tuple[dict[str, Any], ...]) -> Printer:
    """The printer of a custom resource version (the apiextensions table convertor).

    Without ``additionalPrinterColumns`` a CRD prints an ``Age`` date column. A column whose
    jsonPath does not parse ends the list (the real server keeps the columns before it).
    """
    specs = printer_columns or ({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
                                 "description": CREATED_DESCRIPTION},)
    columns: list[Obj] = [NAME_COLUMN]
    paths: list[_CrdColumn] = []
    for spec in specs:
        json_path = str(spec.get("jsonPath", ""))
        try:
            steps = parse_jsonpath(json_path)
        except JSONPathError:
            break
        description = spec.get("description") or f"Custom resource definition column (in JSONPath format): {json_path}"
        columns.append(column(str(spec.get("name", "")), str(spec.get("type", "string")), str(description),
                              format_=str(spec.get("format") or ""), priority=int(spec.get("priority") or 0)))
        paths.append(_CrdColumn(str(spec.get("type", "string")), steps))

    def cells(obj: Obj, now: float) -> Cells:
        row: Cells = [_name(obj)]
        for col in paths:
            found = find(col.path, obj)
            if not found:
                row.append(None)
            elif col.type == "string":
                row.append(print_value(found[0]))
            else:
                row.append(typed_cell(col.type, found[0], now))
        return row

    return Printer(tuple(columns), cells)


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _spec(obj: Obj) -> Obj:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _status(obj: Obj) -> Obj:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def format_labels(labels: Mapping[str, Any] | None) -> str:
    """``labels.FormatLabels``: ``k=v`` sorted by key, ``<none>`` when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels))


def format_label_selector(selector: Any) -> str:
    """``metav1.FormatLabelSelector``: requirements sorted by key, ``<none>`` when empty."""
    if not isinstance(selector, dict):
        return "<none>"
    terms: list[tuple[str, str]] = [(k, f"{k}={v}") for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), sorted(expr.get("values") or [])
        text = {"In": f"{key} in ({','.join(values)})", "NotIn": f"{key} notin ({','.join(values)})",
                "Exists": key, "DoesNotExist": f"!{key}"}.get(op)
        if text is None:
            return "<error>"
        terms.append((key, text))
    return ",".join(text for _, text in sorted(terms, key=lambda t: t[0])) or "<none>"


def _containers(obj: Obj) -> list[Obj]:
    template = _spec(obj).get("template") or {}
    return [c for c in ((template.get("spec") or {}).get("containers") or []) if isinstance(c, dict)]


def _service_external_ip(spec: Obj, status: Obj) -> str:
    external = [str(ip) for ip in spec.get("externalIPs") or []]
    kind = spec.get("type") or "ClusterIP"
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        ingress = (status.get("loadBalancer") or {}).get("ingress") or []
        lb = [str(i.get("ip") or i.get("hostname") or "") for i in ingress if isinstance(i, dict)]
        lb = [ip for ip in lb if ip]
        return ",".join(lb + external) or "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName") or "")
    return "<unknown>"


def _service_ports(spec: Obj) -> str:
    pieces = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        node = port.get("nodePort")
        pieces.append(f"{port.get('port')}:{node}/{protocol}" if node else f"{port.get('port')}/{protocol}")
    return ",".join(pieces) or "<none>"


def _subjects(obj: Obj, kind: str) -> str:
    names = []
    for subject in obj.get("subjects") or []:
        if subject.get("kind") != kind:
            continue
        if kind == "ServiceAccount":
            names.append(f"{subject.get('namespace', '')}/{subject.get('name', '')}")
        else:
            names.append(str(subject.get("name", "")))
    return ", ".join(names)


def _role_ref(obj: Obj) -> str:
    ref = obj.get("roleRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


_DEFAULT = Printer((NAME_COLUMN, AGE_COLUMN), lambda obj, now: [_name(obj), age(obj, now)])
_CREATED_AT = column("Created At", "string", CREATED_DESCRIPTION)
_RBAC_WIDE = (column("Users", description="Users in the roleBinding", priority=1),
              column("Groups", description="Groups in the roleBinding", priority=1),
              column("ServiceAccounts", description="ServiceAccounts in the roleBinding", priority=1))


def _rbac_binding(obj: Obj, now: float) -> Cells:
    return [_name(obj), _role_ref(obj), age(obj, now), _subjects(obj, "User"), _subjects(obj, "Group"),
            _subjects(obj, "ServiceAccount")]


#: Printers of built-in kinds, by (group, plural): the columns of Kubernetes' own printers.
BUILTIN_PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "namespaces"): Printer(
        (NAME_COLUMN, column("Status", description="The status of the namespace"), AGE_COLUMN),
        lambda o, now: [_name(o), _status(o).get("phase", ""), age(o, now)],
    ),
    ("", "configmaps"): Printer(
        (NAME_COLUMN, column("Data", description="Data contains the configuration data."), AGE_COLUMN),
        lambda o, now: [_name(o), len(o.get("data") or {}) + len(o.get("binaryData") or {}), age(o, now)],
    ),
    ("", "secrets"): Printer(
        (NAME_COLUMN, column("Type", description="Used to facilitate programmatic handling of secret data."),
         column("Data", description="Data contains the secret data."), AGE_COLUMN),
        lambda o, now: [_name(o), o.get("type", ""), len(o.get("data") or {}), age(o, now)],
    ),
    ("", "serviceaccounts"): Printer(
        (NAME_COLUMN, column("Secrets", description="Secrets is a list of the secrets in the same namespace "
                                                    "that pods running using this ServiceAccount are allowed to use."),
         AGE_COLUMN),
        lambda o, now: [_name(o), len(o.get("secrets") or []), age(o, now)],
    ),
    ("", "services"): Printer(
        (NAME_COLUMN, column("Type", description="type determines how the Service is exposed."),
         column("Cluster-IP", description="clusterIP is the IP address of the service."),
         column("External-IP", description="externalIPs is a list of IP addresses for which nodes in the cluster "
                                           "will also accept traffic for this service."),
         column("Port(s)", description="The list of ports that are exposed by this service."), AGE_COLUMN,
         column("Selector", description="Route service traffic to pods with label keys and values matching this "
                                        "selector.", priority=1)),
        lambda o, now: [_name(o), _spec(o).get("type", ""), (_spec(o).get("clusterIPs") or ["<none>"])[0],
                        _service_external_ip(_spec(o), _status(o)), _service_ports(_spec(o)), age(o, now),
                        format_labels(_spec(o).get("selector"))],
    ),
    ("apps", "deployments"): Printer(
        (NAME_COLUMN, column("Ready", description="Number of the pod with ready state"),
         column("Up-to-date", "integer", "Total number of non-terminating pods targeted by this deployment that "
                                         "have the desired template spec."),
         column("Available", "integer", "Total number of available non-terminating pods (ready for at least "
                                        "minReadySeconds) targeted by this deployment."), AGE_COLUMN,
         column("Containers", description="Names of each container in the template.", priority=1),
         column("Images", description="Images referenced by each container in the template.", priority=1),
         column("Selector", description="Label selector for pods.", priority=1)),
        lambda o, now: [_name(o), f"{_status(o).get('readyReplicas', 0)}/{_spec(o).get('replicas', 1)}",
                        _status(o).get("updatedReplicas", 0), _status(o).get("availableReplicas", 0), age(o, now),
                        ",".join(str(c.get("name", "")) for c in _containers(o)),
                        ",".join(str(c.get("image", "")) for c in _containers(o)),
                        format_label_selector(_spec(o).get("selector"))],
    ),
    ("rbac.authorization.k8s.io", "roles"): Printer(
        (NAME_COLUMN, _CREATED_AT), lambda o, now: [_name(o), created_at(o)]),
    ("rbac.authorization.k8s.io", "clusterroles"): Printer(
        (NAME_COLUMN, _CREATED_AT), lambda o, now: [_name(o), created_at(o)]),
    ("rbac.authorization.k8s.io", "rolebindings"): Printer(
        (NAME_COLUMN, column("Role", description="RoleRef can reference a Role in the current namespace or a "
                                                 "ClusterRole in the global namespace."), AGE_COLUMN, *_RBAC_WIDE),
        _rbac_binding,
    ),
    ("rbac.authorization.k8s.io", "clusterrolebindings"): Printer(
        (NAME_COLUMN, column("Role", description="RoleRef can only reference a ClusterRole in the global "
                                                 "namespace."), AGE_COLUMN, *_RBAC_WIDE),
        _rbac_binding,
    ),
    ("coordination.k8s.io", "leases"): Printer(
        (NAME_COLUMN, column("Holder", description="holderIdentity contains the identity of the holder of a "
                                                   "current lease."), AGE_COLUMN),
        lambda o, now: [_name(o), _spec(o).get("holderIdentity") or "", age(o, now)],
    ),
    # The generic printer (rest.NewDefaultTableConvertor) of the apiextensions server.
    ("apiextensions.k8s.io", "customresourcedefinitions"): Printer(
        (NAME_COLUMN, column("Created At", "date", CREATED_DESCRIPTION)), lambda o, now: [_name(o), created_at(o)]),
}


def printer_for(rtype: ResourceType) -> Printer:
    """The printer of a resource type: its CRD columns, a built-in printer, or Name/Age."""
    if rtype.custom:
        return crd_printer(rtype.printer_columns)
    return BUILTIN_PRINTERS.get((rtype.group, rtype.plural), _DEFAULT)


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------


@dataclass
class TableView:
    """Renders objects of one resource type as ``Table`` bodies for one request."""

    rtype: ResourceType
    api_version: str  # meta.k8s.io/v1 or meta.k8s.io/v1beta1
    include: str = "Metadata"
    clock: Callable[[], float] = time.time
    printer: Printer = field(init=False)
    _headers_sent: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.printer = printer_for(self.rtype)

    def _row(self, obj: Obj, now: float) -> Obj:
        if self.include == "None":
            embedded: Obj | None = None
        elif self.include == "Object":
            embedded = {"kind": self.rtype.kind, "apiVersion": self.rtype.api_version, **obj}
        else:
            embedded = {"kind": "PartialObjectMetadata", "apiVersion": self.api_version,
                        "metadata": obj.get("metadata") or {}}
        return {"cells": self.printer.cells(obj, now), "object": embedded}

    def table(self, items: list[Obj], metadata: Obj, *, headers: bool = True) -> Obj:
        """A Table of ``items`` with ListMeta ``metadata`` (resourceVersion, continue, remainingItemCount)."""
        now = self.clock()
        return {
            "kind": "Table",
            "apiVersion": self.api_version,
            "metadata": metadata,
            "columnDefinitions": [dict(c) for c in self.printer.columns] if headers else None,
            "rows": [self._row(item, now) for item in items],
        }

    def of_list(self, body: Obj) -> Obj:
        """The Table of a list response body (``kind: XList`` with ``metadata`` and ``items``)."""
        return self.table(list(body.get("items") or []), dict(body.get("metadata") or {}))

    def of_object(self, obj: Obj) -> Obj:
        """The one-row Table of a single object (metadata: its resourceVersion)."""
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        return self.table([obj], {"resourceVersion": rv} if rv else {})

    def watch_object(self, obj: Obj) -> Obj:
        """A watch event's object as a one-row Table; column definitions on the first event only.

        A BOOKMARK (an object carrying only ``metadata.resourceVersion``) becomes a Table without rows.
        """
        headers = not self._headers_sent
        self._headers_sent = True
        meta = obj.get("metadata") or {}
        rv = meta.get("resourceVersion")
        items = [obj] if meta.get("name") else []
        return self.table(items, {"resourceVersion": rv} if rv else {}, headers=headers)
