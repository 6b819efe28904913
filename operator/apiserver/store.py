"""The object store: Kubernetes write semantics over in-memory objects, with an event history.

One cluster-wide, monotonic ``resourceVersion`` counter stamps every write. Every write is
recorded as an event (ADDED/MODIFIED/DELETED) in a bounded history, so a watch can resume
from a resourceVersion and receive exactly what it missed, or learn it is too old (410).
All operations are synchronous (no ``await`` inside), so each is atomic within the event loop:
a list and a watch started from its resourceVersion never miss or repeat an event.

Stored objects are treated as immutable: every write stores a new dict, so events, list
snapshots and responses can share them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import datetime
import json
import random
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import apply as apply_mod
from . import errors as e
from . import kinds, patches, schema, validation
from .crd_objects import crd_errors, prepare_crd
from .errors import ApiError, FieldError
from .resources import Registry, ResourceType, types_from_crd
from .selectors import FieldSelector, LabelSelector

Obj = dict[str, Any]
ResourceKey = tuple[str, str]  # (group, plural): objects are shared by all versions of a resource
ObjectKey = tuple[str, str, str, str]  # (group, plural, namespace, name); namespace "" if cluster-scoped

CelValidator = Callable[[ResourceType, Obj, "Obj | None"], list[FieldError]]

#: Finalizers the server itself handles (as the garbage collector and controllers do).
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
#: Namespaces a real API server refuses to delete.
PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resource_key(rtype: ResourceType) -> ResourceKey:
    return (rtype.group, rtype.plural)


@dataclass(frozen=True)
class Event:
    """One committed change. For DELETED, ``obj`` is the last state with the deletion's version."""

    rv: int
    resource: ResourceKey
    type: str
    obj: Obj
    old: Obj | None


@dataclass(eq=False)
class Watcher:
    """A live watch: filters events of one resource into a queue the HTTP layer streams."""

    rtype: ResourceType
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    maxsize: int = 10_000
    queue: asyncio.Queue[tuple[str, Obj] | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    def translate(self, event: Event) -> tuple[str, Obj] | None:
        """The event as this watcher sees it (selector transitions become ADDED/DELETED)."""
        if event.type == "MODIFIED":
            before, after = self.matches(event.old), self.matches(event.obj)
            if before and after:
                return ("MODIFIED", event.obj)
            if after:
                return ("ADDED", event.obj)
            if before:
                return ("DELETED", event.obj)
            return None
        return (event.type, event.obj) if self.matches(event.obj) else None

    def offer(self, event: Event) -> None:
        if self.closed:
            return
        seen = self.translate(event)
        if seen is None:
            return
        if self.queue.qsize() >= self.maxsize:
            self.close()  # a consumer this slow must re-watch from its last resourceVersion
            return
        self.queue.put_nowait(seen)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


@dataclass
class ListResult:
    items: list[Obj]
    resource_version: int
    continue_token: str | None
    remaining: int | None


@dataclass
class Store:
    """In-memory objects with Kubernetes semantics. See the module docstring."""

    registry: Registry
    cel: CelValidator | None = None
    #: Checks a CRD's CEL rules compile (a real server rejects a CRD whose rules do not).
    cel_compile: Callable[[Obj], list[FieldError]] | None = None
    history_size: int = 10_000
    snapshot_limit: int = 64

    rv: int = 0
    objects: dict[ResourceKey, dict[tuple[str, str], Obj]] = field(default_factory=dict)
    by_uid: dict[str, ObjectKey] = field(default_factory=dict)
    dependents: dict[str, set[ObjectKey]] = field(default_factory=dict)
    history: deque[Event] = field(default_factory=deque)
    compacted_rv: int = 0
    watchers: dict[ResourceKey, set[Watcher]] = field(default_factory=dict)
    snapshots: OrderedDict[str, tuple[int, list[Obj]]] = field(default_factory=OrderedDict)
    listeners: list[Callable[[Event], None]] = field(default_factory=list)
    #: Server-side apply: object key -> field manager -> owned field paths (see apply.py).
    managers: dict[ObjectKey, dict[str, set[tuple[Any, ...]]]] = field(default_factory=dict)

    # -----------------------------------------------------------------------------------------
    # Reading
    # -----------------------------------------------------------------------------------------

    def _bucket(self, rtype: ResourceType) -> dict[tuple[str, str], Obj]:
        return self.objects.setdefault(resource_key(rtype), {})

    def peek(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj | None:
        return self._bucket(rtype).get((namespace or "", name))

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self.peek(rtype, namespace, name)
        if obj is None:
            raise e.not_found(rtype.plural, rtype.group, name)
        return self.present(rtype, obj)

    def get_by_uid(self, uid: str) -> Obj | None:
        key = self.by_uid.get(uid)
        if key is None:
            return None
        return self.objects.get((key[0], key[1]), {}).get((key[2], key[3]))

    def present(self, rtype: ResourceType, obj: Obj) -> Obj:
        """The object as served at ``rtype``'s version (custom resources: apiVersion only)."""
        if obj.get("apiVersion") != rtype.api_version:
            obj = {**obj, "apiVersion": rtype.api_version}
        return obj

    def list_objects(
        self,
        rtype: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        if continue_token:
            rv, remaining_items = self._resume(continue_token)
        else:
            rv = self.rv
            bucket = self._bucket(rtype)
            remaining_items = [
                bucket[k] for k in sorted(bucket)
                if (namespace is None or k[0] == namespace) and self._selects(bucket[k], labels, fields)
            ]
        if limit and len(remaining_items) > limit:
            page, rest = remaining_items[:limit], remaining_items[limit:]
            token = self._snapshot(rv, rest)
            count = len(rest) if labels.empty and fields.terms == () else None
            return ListResult([self.present(rtype, o) for o in page], rv, token, count)
        return ListResult([self.present(rtype, o) for o in remaining_items], rv, None, None)

    @staticmethod
    def _selects(obj: Obj, labels: LabelSelector, fields: FieldSelector) -> bool:
        return labels.matches((obj.get("metadata") or {}).get("labels")) and fields.matches(obj)

    def _snapshot(self, rv: int, rest: list[Obj]) -> str:
        ident = uuid.uuid4().hex
        self.snapshots[ident] = (rv, rest)
        while len(self.snapshots) > self.snapshot_limit:
            self.snapshots.popitem(last=False)
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "id": ident}).encode()
        return base64.urlsafe_b64encode(raw).decode()

    def _resume(self, token: str) -> tuple[int, list[Obj]]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            rv, ident = int(data["rv"]), str(data["id"])
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise e.bad_request(f"continue key is not valid: {exc}") from None
        snapshot = self.snapshots.get(ident)
        if snapshot is None or rv < self.compacted_rv:
            raise e.expired(
                "The provided continue parameter is too old to display a consistent list result. You can start "
                "a new list without the continue parameter."
            )
        return snapshot

    # -----------------------------------------------------------------------------------------
    # Watching
    # -----------------------------------------------------------------------------------------

    def watch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        resource_version: str | None,
        send_initial_events: bool | None = None,
    ) -> tuple[Watcher, list[tuple[str, Obj]]]:
        """Register a watcher; returns it and the events to send first (synthetic or missed)."""
        watcher = Watcher(rtype, namespace, labels, fields)
        initial: list[tuple[str, Obj]]
        rv_text = resource_version or ""
        if send_initial_events or (rv_text in ("", "0") and send_initial_events is None):
            bucket = self._bucket(rtype)
            initial = [("ADDED", bucket[k]) for k in sorted(bucket) if watcher.matches(bucket[k])]
        elif rv_text in ("", "0"):
            initial = []  # sendInitialEvents=false without a resourceVersion: changes from now on
        else:
            try:
                since = int(rv_text)
            except ValueError:
                raise e.bad_request(f"invalid resource version: {rv_text!r}") from None
            if since < self.compacted_rv:
                raise e.expired(f"too old resource version: {since} ({self.compacted_rv + 1})")
            missed: list[Event] = []
            for event in reversed(self.history):
                if event.rv <= since:
                    break
                if event.resource == resource_key(rtype):
                    missed.append(event)
            initial = [seen for ev in reversed(missed) if (seen := watcher.translate(ev)) is not None]
        self.watchers.setdefault(resource_key(rtype), set()).add(watcher)
        return watcher, [(t, self.present(rtype, o)) for t, o in initial]

    def unwatch(self, watcher: Watcher) -> None:
        self.watchers.get(resource_key(watcher.rtype), set()).discard(watcher)

    def close_watchers(self) -> None:
        for watchers in self.watchers.values():
            for watcher in list(watchers):
                watcher.close()

    # -----------------------------------------------------------------------------------------
    # Committing
    # -----------------------------------------------------------------------------------------

    def _record(self, event: Event) -> None:
        if len(self.history) >= self.history_size:
            self.compacted_rv = self.history.popleft().rv
        self.history.append(event)
        for watcher in list(self.watchers.get(event.resource, ())):
            if watcher.closed:
                self.unwatch(watcher)
            else:
                watcher.offer(event)
        for listener in self.listeners:
            listener(event)

    def _index(self, key: ObjectKey, old: Obj | None, new: Obj | None) -> None:
        if old is not None:
            for ref in (old.get("metadata") or {}).get("ownerReferences") or []:
                deps = self.dependents.get(ref.get("uid", ""))
                if deps is not None:
                    deps.discard(key)
                    if not deps:
                        del self.dependents[ref.get("uid", "")]
            self.by_uid.pop((old.get("metadata") or {}).get("uid", ""), None)
        if new is not None:
            meta = new.get("metadata") or {}
            self.by_uid[meta["uid"]] = key
            for ref in meta.get("ownerReferences") or []:
                if isinstance(ref, dict) and ref.get("uid"):
                    self.dependents.setdefault(ref["uid"], set()).add(key)

    def _store(self, rtype: ResourceType, old: Obj | None, new: Obj, event_type: str) -> Obj:
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        meta = new["metadata"]
        key: ObjectKey = (rtype.group, rtype.plural, meta.get("namespace", ""), meta["name"])
        self._bucket(rtype)[(key[2], key[3])] = new
        self._index(key, old, new)
        self._after_store(rtype, new)
        self._record(Event(self.rv, resource_key(rtype), event_type, new, old))
        return new

    def _remove(self, rtype: ResourceType, obj: Obj) -> Obj:
        self.rv += 1
        meta = obj["metadata"]
        key: ObjectKey = (rtype.group, rtype.plural, meta.get("namespace", ""), meta["name"])
        final = {**obj, "metadata": {**meta, "resourceVersion": str(self.rv)}}
        self._bucket(rtype).pop((key[2], key[3]), None)
        self._index(key, obj, None)
        self.managers.pop(key, None)
        self._after_remove(rtype, final)
        self._record(Event(self.rv, resource_key(rtype), "DELETED", final, obj))
        return final

    def _after_store(self, rtype: ResourceType, obj: Obj) -> None:
        if rtype.group == "apiextensions.k8s.io" and rtype.plural == "customresourcedefinitions":
            self.registry.replace_crd(obj["metadata"]["name"], types_from_crd(obj))

    def _after_remove(self, rtype: ResourceType, obj: Obj) -> None:
        if rtype.group == "apiextensions.k8s.io" and rtype.plural == "customresourcedefinitions":
            gone = self.registry.remove_crd(obj["metadata"]["name"])
            for served in gone:
                self.objects.pop(resource_key(served), None)
                for watcher in self.watchers.pop(resource_key(served), set()):
                    watcher.close()

    # -----------------------------------------------------------------------------------------
    # Writing
    # -----------------------------------------------------------------------------------------

    def _check_body(self, rtype: ResourceType, body: Any, namespace: str | None, name: str | None) -> Obj:
        if not isinstance(body, dict):
            raise e.bad_request("the request body must be a JSON object")
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if api_version and api_version != rtype.api_version:
            raise e.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({rtype.api_version})"
            )
        if kind and kind != rtype.kind:
            raise e.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})")
        obj = copy.deepcopy(body)
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise e.bad_request("metadata must be an object")
        meta.pop("managedFields", None)
        meta.pop("selfLink", None)
        if rtype.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise e.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace or body_ns or ""
        else:
            meta.pop("namespace", None)
        if name is not None and meta.get("name") and meta["name"] != name:
            raise e.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        return obj

    def _check_namespace(self, rtype: ResourceType, name: str, namespace: str) -> None:
        if not rtype.namespaced:
            return
        if not namespace:
            raise e.bad_request("the namespace of the object must be set for a namespaced resource")
        ns = self.objects.get(("", "namespaces"), {}).get(("", namespace))
        if ns is None:
            raise e.not_found("namespaces", "", namespace)
        if (ns.get("metadata") or {}).get("deletionTimestamp"):
            raise e.forbidden(
                rtype.plural, rtype.group, name,
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def _validate(self, rtype: ResourceType, obj: Obj, old: Obj | None) -> tuple[Obj, list[str]]:
        """Run the write pipeline (defaults, pruning, validation); returns the object and pruned paths."""
        pruned: list[str] = []
        undecodable = kinds.decode_error(rtype, obj)
        if undecodable:
            raise e.bad_request(undecodable)
        if rtype.custom:
            assert rtype.schema is not None
            obj, pruned = schema.prune(obj, rtype.schema)
            obj = schema.apply_defaults(obj, rtype.schema)
        else:
            kinds.prepare(rtype, obj)
        problems = validation.validate_metadata(rtype, obj)
        if old is not None:
            problems += validation.validate_metadata_update(old, obj)
        if rtype.custom:
            assert rtype.schema is not None
            problems += schema.validate(obj, rtype.schema)
            if self.cel is not None and not any(p.reason == "FieldValueTypeInvalid" for p in problems):
                problems += self.cel(rtype, obj, old)
        else:
            problems += kinds.validate(rtype, obj)
            if old is not None:
                problems += kinds.validate_update(rtype, old, obj)
        if rtype.plural == "customresourcedefinitions" and rtype.group == "apiextensions.k8s.io":
            problems += crd_errors(obj)
            if self.cel_compile is not None and not problems:
                problems += self.cel_compile(obj)
        if problems:
            name = (obj.get("metadata") or {}).get("name") or ""
            raise e.invalid(rtype.kind, rtype.group, name, problems)
        return obj, pruned

    def create(
        self,
        rtype: ResourceType,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
    ) -> tuple[Obj, list[str]]:
        """Create an object; returns it and the pruned unknown fields (for warnings/strict validation)."""
        obj = self._check_body(rtype, body, namespace, None)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generate_name(rtype, meta.get("namespace", ""), str(meta["generateName"]))
        name = meta.get("name") or ""
        if name and isinstance(name, str):
            self._check_namespace(rtype, name, meta.get("namespace", ""))
        for key in ("uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
                    "deletionGracePeriodSeconds"):
            meta.pop(key, None)
        if rtype.has_status:
            obj.pop("status", None)  # status is set only through the /status subresource
        if not rtype.custom:
            kinds.prepare_create(rtype, obj)
        if rtype.plural == "customresourcedefinitions" and rtype.group == "apiextensions.k8s.io":
            prepare_crd(obj)
        obj, pruned = self._validate(rtype, obj, None)
        meta = obj["metadata"]
        if self.peek(rtype, meta.get("namespace"), meta["name"]) is not None:
            raise e.already_exists(rtype.plural, rtype.group, meta["name"])
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if rtype.has_generation:
            meta["generation"] = 1
        if dry_run:
            return obj, pruned
        return self._store(rtype, None, obj, "ADDED"), pruned

    def _generate_name(self, rtype: ResourceType, namespace: str, prefix: str) -> str:
        prefix = prefix[:58]
        for _ in range(8):
            name = prefix + "".join(random.choice(_NAME_CHARS) for _ in range(5))
            if self.peek(rtype, namespace, name) is None:
                return name
        raise e.already_exists(rtype.plural, rtype.group, prefix)  # pragma: no cover

    def update(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        require_rv: bool | None = None,
    ) -> tuple[Obj, list[str]]:
        """Replace an object (PUT, or a patch result); 409 when ``metadata.resourceVersion`` is stale."""
        old = self.peek(rtype, namespace, name)
        if old is None:
            raise e.not_found(rtype.plural, rtype.group, name)
        new = self._check_body(rtype, body, namespace, name)
        meta = new["metadata"]
        meta.setdefault("name", name)
        sent_rv = meta.get("resourceVersion")
        if sent_rv not in (None, "") and str(sent_rv) != old["metadata"]["resourceVersion"]:
            raise e.conflict(rtype.plural, rtype.group, name, e.STALE)
        needs_rv = rtype.custom if require_rv is None else require_rv
        if needs_rv and sent_rv in (None, ""):
            raise e.invalid(rtype.kind, rtype.group, name, [FieldError(
                "metadata.resourceVersion", "FieldValueInvalid", "Invalid value: 0x0: must be specified for an update"
            )])
        return self._write(rtype, old, new, subresource=subresource, dry_run=dry_run)

    def _write(
        self,
        rtype: ResourceType,
        old: Obj,
        new: Obj,
        *,
        subresource: str | None,
        dry_run: bool,
    ) -> tuple[Obj, list[str]]:
        old_meta = old["metadata"]
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif rtype.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        meta = new["metadata"]
        for key in ("creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        if not meta.get("uid"):
            meta["uid"] = old_meta["uid"]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        new, pruned = self._validate(rtype, new, old)
        meta = new["metadata"]
        if rtype.has_generation:
            generation = int(old_meta.get("generation", 1))
            if kinds.generation_view(rtype, new) != kinds.generation_view(rtype, old):
                generation += 1
            meta["generation"] = generation
        else:
            meta.pop("generation", None)
        if new == old:
            return self.present(rtype, old), pruned  # a no-op write: no new resourceVersion, no event
        if dry_run:
            return self.present(rtype, new), pruned
        if meta.get("deletionTimestamp") and not self._pending_finalizers(rtype, new):
            # The last finalizer is gone: as on a real server the update is not stored; the object
            # is deleted (one DELETED event carrying its last stored state).
            final = self._remove(rtype, old)
            meta["resourceVersion"] = final["metadata"]["resourceVersion"]
            return self.present(rtype, new), pruned
        stored = self._store(rtype, old, new, "MODIFIED")
        return self.present(rtype, stored), pruned

    @staticmethod
    def _pending_finalizers(rtype: ResourceType, obj: Obj) -> list[str]:
        pending = list((obj.get("metadata") or {}).get("finalizers") or [])
        if rtype.group == "" and rtype.plural == "namespaces":
            pending += list((obj.get("spec") or {}).get("finalizers") or [])
        return pending

    def replace_internal(self, rtype: ResourceType, obj: Obj, mutate: Callable[[Obj], None]) -> Obj:
        """Server-internal update (controllers): mutate a copy of the stored object and write it."""
        new = copy.deepcopy(obj)
        mutate(new)
        meta = new["metadata"]
        namespace = meta.get("namespace")
        stored, _ = self._write(rtype, obj, new, subresource=None, dry_run=False)
        if rtype.has_status and new.get("status") != obj.get("status"):
            current = self.peek(rtype, namespace, meta["name"])
            if current is not None:
                status_copy = copy.deepcopy(current)
                status_copy["status"] = new.get("status")
                stored, _ = self._write(rtype, current, status_copy, subresource="status", dry_run=False)
        return stored

    # -----------------------------------------------------------------------------------------
    # Patching
    # -----------------------------------------------------------------------------------------

    def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        patch_type: str,
        document: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        manager: str | None = None,
        force: bool = False,
    ) -> tuple[Obj, bool, list[str]]:
        """Patch an object; returns it, whether it was created (apply only) and pruned fields.

        ``patch_type`` is ``json``, ``merge``, ``strategic`` or ``apply``; ``document`` is the
        decoded patch body.
        """
        if force and patch_type != "apply":
            raise e.invalid("PatchOptions", "meta.k8s.io", "", [
                FieldError("force", "FieldValueForbidden", "Forbidden: may not be specified for non-apply patch")])
        if patch_type == "apply":
            return self._apply(rtype, namespace, name, document, subresource=subresource, dry_run=dry_run,
                               manager=manager, force=force)
        old = self.peek(rtype, namespace, name)
        if old is None:
            raise e.not_found(rtype.plural, rtype.group, name)
        current = self.present(rtype, old)
        try:
            if patch_type == "json":
                patched = patches.json_patch(current, document)
            elif patch_type == "merge":
                patched = patches.merge_patch(current, document)
                if not isinstance(patched, dict):
                    raise patches.PatchError("a merge patch of an object must be an object")
            elif patch_type == "strategic":
                if rtype.custom:
                    raise e.unsupported_media_type("application/strategic-merge-patch+json")
                patched = patches.strategic_merge(current, document)
            else:
                raise e.unsupported_media_type(patch_type)
        except patches.PatchError as exc:
            raise e.bad_request(str(exc)) from None
        except patches.PatchConflict as exc:
            raise e.unprocessable(str(exc)) from None
        obj, pruned = self.update(rtype, namespace, name, patched, subresource=subresource, dry_run=dry_run,
                                  require_rv=False)
        return obj, False, pruned

    def _apply(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        config: Any,
        *,
        subresource: str | None,
        dry_run: bool,
        manager: str | None,
        force: bool,
    ) -> tuple[Obj, bool, list[str]]:
        if not manager:
            raise e.invalid("PatchOptions", "meta.k8s.io", "", [
                FieldError("fieldManager", "FieldValueRequired", "Required value: is required for apply patch")])
        if not isinstance(config, dict):
            raise e.bad_request("the apply configuration must be a YAML or JSON object")
        for key in ("apiVersion", "kind"):
            if not config.get(key):
                raise e.bad_request(f"{key} must be set in an apply configuration")
        config = self._check_body(rtype, config, namespace, name)
        config["metadata"].setdefault("name", name)
        if not rtype.namespaced:
            config["metadata"].pop("namespace", None)
        semantics = _semantics(rtype)
        okey: ObjectKey = (rtype.group, rtype.plural, (namespace or "") if rtype.namespaced else "", name)
        old = self.peek(rtype, namespace, name)
        owners = self.managers.get(okey, {})
        live = None if old is None else self.present(rtype, old)
        if subresource == "status" and live is not None:
            config = {**copy.deepcopy(live), "status": config.get("status")}
        try:
            merged, new_owners = apply_mod.apply(live, config, manager, owners, semantics, force=force)
        except apply_mod.ApplyConflict as exc:
            raise e.conflict(rtype.plural, rtype.group, name, str(exc)) from None
        if old is None:
            if subresource:
                raise e.not_found(rtype.plural, rtype.group, name)
            obj, pruned = self.create(rtype, namespace, merged, dry_run=dry_run)
            created = True
        else:
            obj, pruned = self.update(rtype, namespace, name, merged, subresource=subresource, dry_run=dry_run,
                                      require_rv=False)
            created = False
        if not dry_run:
            self.managers[okey] = new_owners
        return obj, created, pruned

    # -----------------------------------------------------------------------------------------
    # Deleting
    # -----------------------------------------------------------------------------------------

    def delete(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Delete an object; returns it and whether the answer is a Status (True: deleted now or
        already being deleted; False: the object, now waiting for its finalizers)."""
        obj = self.peek(rtype, namespace, name)
        if obj is None:
            raise e.not_found(rtype.plural, rtype.group, name)
        if rtype.group == "" and rtype.plural == "namespaces" and name in PROTECTED_NAMESPACES:
            raise e.forbidden(rtype.plural, rtype.group, name, "this namespace may not be deleted")
        meta = obj["metadata"]
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise e.conflict(rtype.plural, rtype.group, name,
                             f"Precondition failed: UID in precondition: {pre['uid']}, "
                             f"UID in object meta: {meta.get('uid')}")
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != meta.get("resourceVersion"):
            raise e.conflict(rtype.plural, rtype.group, name,
                             f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                             f"ResourceVersion in object meta: {meta.get('resourceVersion')}")
        if propagation not in (None, "", "Background", "Foreground", "Orphan"):
            raise e.invalid("DeleteOptions", "meta.k8s.io", "", [FieldError(
                "propagationPolicy", "FieldValueNotSupported",
                f'Unsupported value: "{propagation}": supported values: "Foreground", "Background", "Orphan", "nil"',
            )])
        finalizers = list(meta.get("finalizers") or [])
        if propagation == "Foreground" and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        if propagation == "Orphan" and ORPHAN not in finalizers:
            finalizers.append(ORPHAN)
        pending = finalizers or self._pending_finalizers(rtype, obj)
        if not pending:
            if dry_run:
                return self.present(rtype, obj), True
            return self.present(rtype, self._remove(rtype, obj)), True
        if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []):
            return self.present(rtype, obj), True
        new = copy.deepcopy(obj)
        new_meta = new["metadata"]
        new_meta["finalizers"] = finalizers
        if not finalizers:
            new_meta.pop("finalizers")
        if not new_meta.get("deletionTimestamp"):
            new_meta["deletionTimestamp"] = now()
            new_meta["deletionGracePeriodSeconds"] = 0
            if rtype.has_generation:
                new_meta["generation"] = int(new_meta.get("generation", 1)) + 1
        if rtype.group == "" and rtype.plural == "namespaces":
            new.setdefault("status", {})["phase"] = "Terminating"
        if dry_run:
            return self.present(rtype, new), False
        return self.present(rtype, self._store(rtype, obj, new, "MODIFIED")), False

    def remove_finalizer(self, rtype: ResourceType, obj: Obj, finalizer: str) -> None:
        """Server-internal: drop one finalizer (metadata or a namespace's spec); delete if none remain."""
        def mutate(new: Obj) -> None:
            meta = new["metadata"]
            meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != finalizer]
            if not meta["finalizers"]:
                meta.pop("finalizers")
            if rtype.group == "" and rtype.plural == "namespaces" and "spec" in new:
                new["spec"]["finalizers"] = [f for f in new["spec"].get("finalizers") or [] if f != finalizer]

        self.replace_internal(rtype, obj, mutate)

    def iter_objects(
        self, rtype_filter: Callable[[ResourceKey], bool] | None = None
    ) -> Iterable[tuple[ResourceKey, Obj]]:
        for rkey, bucket in list(self.objects.items()):
            if rtype_filter is None or rtype_filter(rkey):
                for obj in list(bucket.values()):
                    yield rkey, obj

    def type_of(self, rkey: ResourceKey) -> ResourceType | None:
        """A served type of a stored resource (the storage version when there are several)."""
        best: ResourceType | None = None
        for rtype in self.registry:
            if resource_key(rtype) == rkey and (best is None or rtype.storage):
                best = rtype
        return best


def _semantics(rtype: ResourceType) -> apply_mod.SemanticsFn:
    if rtype.schema is not None:
        return apply_mod.schema_semantics(rtype.schema)
    return apply_mod.builtin_semantics


def dry_run_flag(values: list[str]) -> bool:
    """Parse ``dryRun`` query values: only ``All`` is valid (400 otherwise)."""
    for value in values:
        if value != "All":
            raise ApiError(400, "BadRequest", f"unsupported dry run option: {value!r} (only All is supported)")
    return bool(values)
