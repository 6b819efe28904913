"""The server-side controllers a real control plane runs that clients depend on.

- Garbage collector: an object whose owners (``ownerReferences`` by uid) are all gone is
  deleted (background propagation); owner references to missing owners are dropped when
  other owners remain. A namespaced owner only counts for dependents in its own namespace.
- Deletion propagation: ``Foreground`` (the owner keeps ``foregroundDeletion`` until its
  blocking dependents are gone; dependents are deleted in the foreground too) and ``Orphan``
  (dependents lose the owner reference, then the owner goes).
- Namespace lifecycle: a deleted namespace is ``Terminating`` until everything in it is gone.
- CRD cleanup: a deleted CRD waits until all its custom resources are gone.
- Namespace defaults: every new namespace gets the ``default`` ServiceAccount and the
  ``kube-root-ca.crt`` ConfigMap, as kube-controller-manager creates them (code listing a
  namespace's ConfigMaps must expect them on a real cluster too).

Like the real ones, these run asynchronously, shortly after the change that triggers them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .crd_objects import CRD_CLEANUP
from .errors import ApiError
from .resources import ResourceType
from .store import FOREGROUND, ORPHAN, Event, Obj, ObjectKey, Store

log = logging.getLogger(__name__)


#: A placeholder CA bundle: kube-root-ca.crt holds the cluster CA on a real cluster.
_CA = "-----BEGIN CERTIFICATE-----\nbmV3YXBpLWxvY2FsLWFwaXNlcnZlcg==\n-----END CERTIFICATE-----\n"
NAMESPACE_DEFAULTS: tuple[tuple[tuple[str, str], Obj], ...] = (
    (("", "serviceaccounts"), {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
    (("", "configmaps"), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": (
            "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
            "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
            "distributions of Kubernetes clusters.")}}, "data": {"ca.crt": _CA}}),
)


class Controllers:
    """Runs the garbage collector and the deletion controllers over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._wake = asyncio.Event()
        self._candidates: set[ObjectKey] = set()
        self._deleting: set[ObjectKey] = set()
        self._new_namespaces: set[str] = set()
        store.listeners.append(self._on_event)
        # Objects stored before the controllers started are checked once.
        for (group, plural), obj in store.iter_objects():
            self._note((group, plural, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]), obj)

    def _note(self, key: ObjectKey, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        if meta.get("ownerReferences"):
            self._candidates.add(key)
        if meta.get("deletionTimestamp"):
            self._deleting.add(key)

    def _on_event(self, event: Event) -> None:
        meta = event.obj.get("metadata") or {}
        key: ObjectKey = (event.resource[0], event.resource[1], meta.get("namespace", ""), meta.get("name", ""))
        if event.type == "DELETED":
            self._candidates |= self.store.dependents.get(meta.get("uid", ""), set())
            # An owner waiting in the foreground, a terminating namespace or CRD may now be done.
            for ref in meta.get("ownerReferences") or []:
                owner = self.store.by_uid.get(ref.get("uid", ""))
                if owner is not None:
                    self._deleting.add(owner)
            if meta.get("namespace"):
                self._deleting.add(("", "namespaces", "", meta["namespace"]))
            if event.resource[0] and "." in event.resource[0]:
                self._deleting.add(
                    ("apiextensions.k8s.io", "customresourcedefinitions", "",
                     f"{event.resource[1]}.{event.resource[0]}")
                )
        else:
            self._note(key, event.obj)
            if event.type == "ADDED" and event.resource == ("", "namespaces"):
                self._new_namespaces.add(key[3])
        self._wake.set()

    async def run(self) -> None:
        """Reconcile whenever the store changes, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self.reconcile()
            except Exception:  # a controller bug must not stop the API server
                log.exception("local API server controllers failed")
            await asyncio.sleep(0)

    def reconcile(self) -> None:
        """One pass over everything that may need action (synchronous, atomic)."""
        deleting, self._deleting = self._deleting, set()
        for key in sorted(deleting):
            self._finish_deletion(key)
        candidates, self._candidates = self._candidates, set()
        for key in sorted(candidates):
            self._collect(key)
        namespaces, self._new_namespaces = self._new_namespaces, set()
        for name in sorted(namespaces):
            self._populate(name)

    def _populate(self, namespace: str) -> None:
        for rkey, obj in NAMESPACE_DEFAULTS:
            rtype = self.store.type_of(rkey)
            if rtype is None or self.store.peek(rtype, namespace, obj["metadata"]["name"]) is not None:
                continue
            try:
                self.store.create(rtype, namespace, obj)
            except ApiError as exc:  # e.g. the namespace is already terminating
                log.debug("namespace %s: not creating %s: %s", namespace, obj["metadata"]["name"], exc)

    # -----------------------------------------------------------------------------------------

    def _lookup(self, key: ObjectKey) -> tuple[ResourceType, Obj] | None:
        rtype = self.store.type_of((key[0], key[1]))
        if rtype is None:
            return None
        obj = self.store.peek(rtype, key[2], key[3])
        return None if obj is None else (rtype, obj)

    def _delete(self, key: ObjectKey, propagation: str | None = None) -> None:
        found = self._lookup(key)
        if found is None:
            return
        rtype, obj = found
        if obj["metadata"].get("deletionTimestamp") and propagation is None:
            return
        try:
            self.store.delete(rtype, key[2], key[3], propagation=propagation)
        except ApiError as exc:
            log.warning("could not delete %s: %s", key, exc)

    def _owner_alive(self, dependent: Obj, uid: str) -> bool:
        owner = self.store.get_by_uid(uid)
        if owner is None:
            return False
        owner_ns = (owner.get("metadata") or {}).get("namespace")
        return not owner_ns or owner_ns == (dependent.get("metadata") or {}).get("namespace")

    def _collect(self, key: ObjectKey) -> None:
        found = self._lookup(key)
        if found is None:
            return
        rtype, obj = found
        refs = obj["metadata"].get("ownerReferences") or []
        if not refs:
            return
        dangling = [r for r in refs if not self._owner_alive(obj, r.get("uid", ""))]
        if not dangling:
            return
        if len(dangling) == len(refs):
            self._delete(key)
            return
        gone = {r.get("uid") for r in dangling}

        def drop(new: Obj) -> None:
            new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") not in gone]

        self._internal(rtype, obj, drop)

    def _internal(self, rtype: ResourceType, obj: Obj, mutate: Callable[[Obj], None]) -> None:
        try:
            self.store.replace_internal(rtype, obj, mutate)
        except ApiError as exc:
            log.warning("could not update %s %s: %s", rtype.plural, obj["metadata"].get("name"), exc)

    def _finish_deletion(self, key: ObjectKey) -> None:
        found = self._lookup(key)
        if found is None:
            return
        rtype, obj = found
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp"):
            return
        finalizers = meta.get("finalizers") or []
        uid = meta["uid"]
        if ORPHAN in finalizers:
            for dep_key in sorted(self.store.dependents.get(uid, set())):
                dep = self._lookup(dep_key)
                if dep is not None:
                    refs = dep[1]["metadata"].get("ownerReferences") or []

                    def orphan(new: Obj, refs: list[dict[str, object]] = refs) -> None:
                        new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                        if not new["metadata"]["ownerReferences"]:
                            del new["metadata"]["ownerReferences"]

                    self._internal(dep[0], dep[1], orphan)
            self._release(rtype, key, ORPHAN)
            return
        if FOREGROUND in finalizers:
            blocking = False
            for dep_key in sorted(self.store.dependents.get(uid, set())):
                dep = self._lookup(dep_key)
                if dep is None:
                    continue
                refs = dep[1]["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid and r.get("blockOwnerDeletion") for r in refs):
                    blocking = True
                self._delete(dep_key, propagation="Foreground")
            if not blocking:
                self._release(rtype, key, FOREGROUND)
            return
        if rtype.group == "" and rtype.plural == "namespaces":
            remaining = False
            for (group, plural), child in self.store.iter_objects():
                if child["metadata"].get("namespace") == key[3]:
                    remaining = True
                    self._delete((group, plural, key[3], child["metadata"]["name"]))
            if not remaining:
                self._release(rtype, key, "kubernetes")
            return
        if rtype.plural == "customresourcedefinitions" and CRD_CLEANUP in finalizers:
            spec = obj.get("spec") or {}
            resource = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
            children = [o for rk, o in self.store.iter_objects(lambda rk: rk == resource)]
            for child in children:
                cmeta = child["metadata"]
                self._delete((resource[0], resource[1], cmeta.get("namespace", ""), cmeta["name"]))
            if not children:
                self._release(rtype, key, CRD_CLEANUP)

    def _release(self, rtype: ResourceType, key: ObjectKey, finalizer: str) -> None:
        found = self._lookup(key)
        if found is None:
            return
        try:
            self.store.remove_finalizer(rtype, found[1], finalizer)
        except ApiError as exc:
            log.warning("could not remove finalizer %s from %s: %s", finalizer, key, exc)
