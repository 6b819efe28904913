"""The local API server's objects, kept in ``<state-dir>/apiserver.json`` between ``newapi dev`` runs.

The local API server keeps its objects in memory and offers no snapshot of its own, so this
module saves them (on exit, and every few seconds while they change) and puts them back before
anything connects on the next start. Objects are restored **as they were**: same uid,
creationTimestamp, generation, labels, annotations, finalizers, owner references and status;
only resourceVersions are new. That matters: the operator's credit grant is idempotent by the
CustomerKey's uid, a CustomerKey's key lives in its Secret, the admin token in
``<instance>-admin`` and the garbage collector follows owner references by uid — with new uids a
restart would issue new keys and grant the credit again.

Not kept: CRDs registered by the server at start (the current code's CRDs win), Events, and
Kopf's peering objects. Each object is validated against the current schemas before it is put
back (a dry-run create); one that no longer validates is skipped and reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from newapi_operator.apiserver import ApiError, LocalAPIServer

FORMAT_VERSION = 1
#: (group, plural) never saved.
SKIPPED = frozenset({
    ("", "events"),
    ("events.k8s.io", "events"),
    ("kopf.dev", "kopfpeerings"),
    ("kopf.dev", "clusterkopfpeerings"),
})
CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACES = ("", "namespaces")


@dataclass
class RestoreReport:
    """What a restore did: objects put back, and the ones skipped with why."""

    restored: int = 0
    skipped: list[str] = field(default_factory=list)


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple | list | set | frozenset):
        return [_to_json(v) for v in value]
    return value


def _to_path(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_path(v) for v in value)
    return value


def registered_crds(server: LocalAPIServer) -> set[str]:
    """Names of the CRDs the server has right after start (the product's and Kopf's): never saved."""
    return {obj["metadata"]["name"] for rkey, obj in server.store.iter_objects(lambda k: k == CRDS)}


def snapshot(server: LocalAPIServer, builtin_crds: set[str]) -> dict[str, Any]:
    """Every stored object worth keeping, with server-side apply ownership."""
    store = server.store
    objects: list[dict[str, Any]] = []
    for rkey, obj in store.iter_objects():
        if rkey in SKIPPED:
            continue
        if rkey == CRDS and obj["metadata"]["name"] in builtin_crds:
            continue
        objects.append({"group": rkey[0], "plural": rkey[1], "object": obj})
    managers = [
        {"key": list(okey), "managers": {m: _to_json(sorted(paths, key=repr)) for m, paths in owners.items()}}
        for okey, owners in store.managers.items()
    ]
    return {"version": FORMAT_VERSION, "objects": objects, "managers": managers}


def write_snapshot(path: Path, doc: dict[str, Any]) -> None:
    """Write atomically (a temporary file renamed into place), readable by the owner only."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    tmp.chmod(0o600)
    os.replace(tmp, path)


def _rank(item: dict[str, Any]) -> int:
    rkey = (item["group"], item["plural"])
    return 0 if rkey == NAMESPACES else 1 if rkey == CRDS else 2


def restore(server: LocalAPIServer, doc: dict[str, Any]) -> RestoreReport:
    """Put the objects of a snapshot back into a freshly started server (before any client connects)."""
    report = RestoreReport()
    if doc.get("version") != FORMAT_VERSION:
        report.skipped.append(f"snapshot format {doc.get('version')!r} is not {FORMAT_VERSION}; nothing restored")
        return report
    store = server.store
    for item in sorted(doc.get("objects") or [], key=_rank):
        rkey = (str(item["group"]), str(item["plural"]))
        obj = copy.deepcopy(item["object"])
        meta = obj.get("metadata") or {}
        where = f"{rkey[1]} {meta.get('namespace', '')}/{meta.get('name')}".replace(" /", " ")
        rtype = store.type_of(rkey)
        if rtype is None:
            report.skipped.append(f"{where}: the API server no longer serves {rkey[1]}")
            continue
        if store.peek(rtype, meta.get("namespace"), str(meta.get("name"))) is not None:
            continue  # created at start (the initial namespaces)
        try:
            store.create(rtype, meta.get("namespace"), copy.deepcopy(obj), dry_run=True)
        except ApiError as exc:
            report.skipped.append(f"{where}: no longer valid: {exc.message}")
            continue
        # The store has no public "insert as is" (create() assigns a new uid); _store is the one
        # internal write that keeps the object's identity. Requested upstream as Store.restore().
        store._store(rtype, None, obj, "ADDED")
        report.restored += 1
    for entry in doc.get("managers") or []:
        okey = tuple(entry["key"])
        if len(okey) == 4 and store.type_of((okey[0], okey[1])) is not None:
            store.managers[okey] = {m: {_to_path(p) for p in paths} for m, paths in entry["managers"].items()}
    return report


def load_snapshot(path: Path) -> dict[str, Any] | None:
    """The saved snapshot, or None when there is none; raises ValueError when it is unreadable."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); move it away to start with an empty API server") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a snapshot; move it away to start with an empty API server")
    return doc


class Snapshotter:
    """Saves the server's objects to ``path`` every ``interval`` seconds when they changed, and on ``save()``."""

    def __init__(self, server: LocalAPIServer, path: Path, builtin_crds: set[str], interval: float = 5.0,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.server = server
        self.path = path
        self.builtin_crds = builtin_crds
        self.interval = interval
        self.on_error = on_error
        self._saved_rv: int | None = None
        self._task: asyncio.Task[None] | None = None

    def save(self) -> None:
        rv = self.server.store.rv
        if rv == self._saved_rv:
            return
        write_snapshot(self.path, snapshot(self.server, self.builtin_crds))
        self._saved_rv = rv

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.save()
            except OSError as exc:
                if self.on_error is not None:
                    self.on_error(f"cannot save the API server's objects to {self.path}: {exc.strerror}")

    def start(self) -> None:
        self._saved_rv = self.server.store.rv
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="dev-snapshot")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
