"""Apply desired children idempotently: read, compare the fields we own, write only when different.

Writes use server-side apply (field manager ``newapi-operator``, ``force``), which on a real
API server also removes fields we stopped applying. Keys of maps we own entirely (``data``)
that another writer added are removed with a follow-up merge patch (server-side apply never
removes another manager's fields). An object controlled by something else is never adopted.

After a write the applier remembers ``(hash of desired, resourceVersion written)`` per object:
the watch event of our own write is recognised (no reconcile feedback loop), and if the live
object still differs in a way we cannot fix, it is not rewritten until the desired state changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import constants as c
from .compare import differences, foreign_keys
from .kube import ApiError, KubeClient

log = logging.getLogger("newapi_operator.controller.applier")

ObjKey = tuple[str, str, str, str]  # apiVersion, kind, namespace, name


class Unknown:
    """Marker: the live object has not been read."""


UNKNOWN = Unknown()


class ChildConflict(Exception):
    """A child's name is taken by an object another controller owns."""


def obj_key(obj: Mapping[str, Any]) -> ObjKey:
    meta = obj.get("metadata") or {}
    return (str(obj.get("apiVersion")), str(obj.get("kind")), str(meta.get("namespace", "")), str(meta.get("name")))


def _digest(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


@dataclass
class ApplyResult:
    live: dict[str, Any]
    written: bool
    differences: list[str]


class Applier:
    """Ensures children exist as desired; counts its writes."""

    def __init__(self, client: KubeClient, field_manager: str = c.FIELD_MANAGER) -> None:
        self.client = client
        self.field_manager = field_manager
        self._written: dict[ObjKey, tuple[str, str]] = {}
        self.writes = 0

    def own_version(self, key: ObjKey, resource_version: str | None) -> bool:
        """Whether ``resource_version`` of ``key`` is the one our last write produced."""
        last = self._written.get(key)
        return last is not None and resource_version is not None and last[1] == resource_version

    def forget(self, key: ObjKey) -> None:
        self._written.pop(key, None)

    async def ensure(self, desired: dict[str, Any], owner_uid: str | None = None,
                     live: dict[str, Any] | Unknown | None = UNKNOWN) -> ApplyResult:
        """Make the live object hold ``desired``; writes only when something we own differs.

        ``live``: the object as just read (None: known to be absent), to save the GET.
        """
        key = obj_key(desired)
        api_version, kind, namespace, name = key
        if isinstance(live, Unknown):
            live = await self.client.get(api_version, kind, namespace or None, name)
        digest = _digest(desired)
        if live is None:
            result = await self._apply(desired)
            self._remember(key, digest, result)
            log.info("created child", extra={"kind": kind, "namespace": namespace, "object": name})
            return ApplyResult(result, True, ["<created>"])
        if owner_uid is not None:
            _check_controller(live, owner_uid, kind)
        diffs = differences(desired, live, kind=kind)
        if not diffs:
            return ApplyResult(live, False, [])
        rv = (live.get("metadata") or {}).get("resourceVersion")
        if self._written.get(key) == (digest, rv):
            log.warning("child still differs after our write; leaving it until the desired state changes",
                        extra={"kind": kind, "namespace": namespace, "object": name, "fields": diffs[:10]})
            return ApplyResult(live, False, diffs)
        try:
            result = await self._apply(desired)
        except ApiError as err:
            if err.status != 422 or "immutable" not in err.message.lower():
                raise
            # A field that cannot change (e.g. a hand-made object with another selector): replace it.
            log.warning("child has an immutable field that differs; recreating it",
                        extra={"kind": kind, "namespace": namespace, "object": name, "error": err.message})
            await self.client.delete(api_version, kind, namespace or None, name,
                                     uid=(live.get("metadata") or {}).get("uid"))
            result = await self._apply(desired)
        patch = foreign_keys(desired, result)
        if patch:
            patch.setdefault("metadata", {})["resourceVersion"] = result["metadata"]["resourceVersion"]
            self.writes += 1
            result = await self.client.merge_patch(api_version, kind, namespace or None, name, patch)
        self._remember(key, digest, result)
        log.info("updated child", extra={"kind": kind, "namespace": namespace, "object": name, "fields": diffs[:10]})
        return ApplyResult(result, True, diffs)

    async def ensure_absent(self, api_version: str, kind: str, namespace: str, name: str, owner_uid: str) -> bool:
        """Delete the child if it exists and is ours (controlled by ``owner_uid``); True when deleted."""
        live = await self.client.get(api_version, kind, namespace, name)
        if live is None:
            return False
        refs = (live.get("metadata") or {}).get("ownerReferences") or []
        if not any(r.get("uid") == owner_uid and r.get("controller") for r in refs):
            return False
        self.writes += 1
        deleted = await self.client.delete(api_version, kind, namespace, name, uid=live["metadata"].get("uid"))
        self.forget((api_version, kind, namespace, name))
        if deleted:
            log.info("deleted child", extra={"kind": kind, "namespace": namespace, "object": name})
        return deleted

    async def _apply(self, desired: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        return await self.client.apply(desired, self.field_manager, force=True)

    def _remember(self, key: ObjKey, digest: str, result: Mapping[str, Any]) -> None:
        rv = (result.get("metadata") or {}).get("resourceVersion")
        if rv:
            self._written[key] = (digest, str(rv))


def _check_controller(live: Mapping[str, Any], owner_uid: str, kind: str) -> None:
    meta = live.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid") != owner_uid:
            raise ChildConflict(
                f"{kind} {meta.get('name')} already exists and is controlled by {ref.get('kind')} "
                f"{ref.get('name')}; delete or rename it so the operator can create its own")
