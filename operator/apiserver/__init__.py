"""A local Kubernetes API server for tests and ``newapi dev``, built on kmock's emulator.

It behaves like a real API server where the product depends on it: discovery, metadata
stamping, optimistic concurrency, Status errors, patches (JSON, merge, strategic, a subset of
server-side apply), status subresources, watches with resumption and 410 Gone, label and
field selectors, pagination, CRD validation (structural schema, defaults, pruning, CEL rules),
garbage collection, finalizers and namespace lifecycle. See ``README.md`` in this package for
what is implemented, what is not, and the design.

Public API::

    async with LocalAPIServer(crds=build_crds(), host="127.0.0.1", port=0) as server:
        server.url                       # http://127.0.0.1:<port>
        server.write_kubeconfig(path)    # for kubectl, Kopf, kubernetes-asyncio

    with ThreadedAPIServer(crds=build_crds()) as server: ...   # for synchronous callers
"""

from __future__ import annotations

from .errors import ApiError, FieldError
from .kubeconfig import kubeconfig, write_kubeconfig
from .resources import BUILTIN_TYPES, ResourceType
from .server import LocalAPIServer, ThreadedAPIServer

__all__ = [
    "BUILTIN_TYPES",
    "ApiError",
    "FieldError",
    "LocalAPIServer",
    "ResourceType",
    "ThreadedAPIServer",
    "kubeconfig",
    "write_kubeconfig",
]
