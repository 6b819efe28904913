"""Kubeconfig files pointing at the local API server (plain HTTP, no credentials)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONTEXT = "newapi-local"


def kubeconfig(url: str, *, context: str = DEFAULT_CONTEXT, namespace: str = "default") -> dict[str, Any]:
    """The kubeconfig document for ``url`` (one cluster, one user without credentials, one context)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": context, "cluster": {"server": url.rstrip("/")}}],
        "users": [{"name": context, "user": {}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
        "current-context": context,
    }


def write_kubeconfig(
    path: str | os.PathLike[str], url: str, *, context: str = DEFAULT_CONTEXT, namespace: str = "default"
) -> Path:
    """Write a kubeconfig for ``url`` that kubectl, Kopf and kubernetes-asyncio accept; returns the path.

    The file is written atomically (a temporary file renamed into place) with mode 0600, as
    kubectl expects of a kubeconfig.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(yaml.safe_dump(kubeconfig(url, context=context, namespace=namespace), sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(target)
    return target
