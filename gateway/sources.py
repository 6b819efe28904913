"""Where the routing table and upstream credentials come from, and how changes are noticed.

* :class:`FilePoller`: standalone files, polled cheaply (one ``stat`` per interval; a change of
  inode, size or mtime triggers a read). Kubernetes ConfigMap volumes swap a symlink, which changes
  the inode, so this also works for mounted files.
* :class:`KubeObjectWatch`: one ConfigMap or Secret by name through the Kubernetes API: list, then
  watch from the list's resourceVersion; re-list on 410 Gone (expired version); exponential backoff
  on errors.

Each delivers documents to callbacks that validate and install them (``GatewayState``); a
document that fails validation is rejected there and the current configuration stays.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .routing_table import CONFIGMAP_KEY, InvalidRoutingTable, configmap_table

log = logging.getLogger("newapi_gateway.sources")

Signature = tuple[int, int, int, int]


def file_signature(path: str) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class FilePoller:
    """Calls ``on_change(data)`` with the file's bytes at start and whenever the file changes.

    ``on_change`` returns False when it rejected the document (the poller reports it from :meth:`check`).
    """

    def __init__(self, path: str, on_change: Callable[[bytes], bool | None], interval: float = 1.0) -> None:
        self.path = path
        self.on_change = on_change
        self.interval = interval
        self._last: Signature | None = None

    def check(self) -> bool:
        """Load the file if it changed since the last check; True when it changed and was accepted."""
        sig = file_signature(self.path)
        if sig is None or sig == self._last:
            return False
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as err:
            log.warning("cannot read %s: %s", self.path, err.strerror)
            return False
        self._last = sig
        return self.on_change(data) is not False

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:
                log.exception("file reload failed", extra={"path": self.path})


class KubeObjectWatch:
    """Follows one named ConfigMap or Secret; calls ``on_data(data or None)`` on every version.

    ``data`` is the object's ``data`` map (base64 values for a Secret), None when it does not exist.
    For a ConfigMap whose table is stored compressed (``binaryData["routes.json.gz"]``), the table is
    delivered decompressed under ``routes.json``, so consumers see one shape.
    """

    def __init__(
        self,
        api: Any,
        kind: str,
        namespace: str,
        name: str,
        on_data: Callable[[dict[str, str] | None], Awaitable[None] | None],
        watch_timeout: int = 300,
        max_backoff: float = 30.0,
    ) -> None:
        if kind not in ("configmap", "secret"):
            raise ValueError(f"kind must be configmap or secret, not {kind!r}")
        self.api = api
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.on_data = on_data
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.lists = 0  # number of (re-)lists, for tests and logs

    def _list_fn(self) -> Any:
        if self.kind == "configmap":
            return self.api.list_namespaced_config_map
        return self.api.list_namespaced_secret

    def _payload(self, raw: Mapping[str, Any]) -> dict[str, str]:
        data = dict(raw.get("data") or {})
        if self.kind == "configmap" and CONFIGMAP_KEY not in data:
            try:
                table = configmap_table(None, raw.get("binaryData"))
            except InvalidRoutingTable as err:
                log.warning("routing ConfigMap has an unreadable compressed table", extra={"error": str(err)})
                table = "{}"  # rejected by validation downstream: the old table stays
            if table is not None:
                data[CONFIGMAP_KEY] = table
        return data

    async def _deliver(self, data: dict[str, str] | None) -> None:
        result = self.on_data(data)
        if result is not None:
            await result

    async def run(self) -> None:
        from kubernetes_asyncio import watch
        from kubernetes_asyncio.client.exceptions import ApiException

        selector = f"metadata.name={self.name}"
        backoff = 0.5
        while True:
            try:
                listed = await self._list_fn()(self.namespace, field_selector=selector)
                self.lists += 1
                version = listed.metadata.resource_version
                items = listed.items or []
                await self._deliver(self._payload(self.api.api_client.sanitize_for_serialization(items[0]))
                                    if items else None)
                backoff = 0.5
                while True:  # watch until the version expires (410) or an error
                    w = watch.Watch()
                    try:
                        stream = w.stream(
                            self._list_fn(), self.namespace, field_selector=selector, resource_version=version,
                            timeout_seconds=self.watch_timeout, allow_watch_bookmarks=True,
                        )
                        async for event in stream:
                            raw = event["raw_object"]
                            version = raw.get("metadata", {}).get("resourceVersion", version)
                            kind = event["type"]
                            if kind in ("ADDED", "MODIFIED"):
                                await self._deliver(self._payload(raw))
                            elif kind == "DELETED":
                                await self._deliver(None)
                    finally:
                        await w.close()
            except asyncio.CancelledError:
                raise
            except ApiException as err:
                if err.status == 410:
                    log.info("watch expired; re-listing", extra={"kind": self.kind, "object": self.name})
                    continue
                log.warning("kubernetes API error; retrying",
                            extra={"kind": self.kind, "object": self.name, "status": err.status, "backoff_s": backoff})
            except Exception as err:
                log.warning("kubernetes watch failed; retrying",
                            extra={"kind": self.kind, "object": self.name, "error": type(err).__name__,
                                   "backoff_s": backoff})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
