"""The operator's runtime state: configuration, clients, caches, Kopf indexes and work queues.

One :class:`Runtime` per process; Kopf handlers (see :mod:`.handlers`) only feed it watch
events; the reconcilers read it. Kopf fills the indexes before any handler runs, so the first
reconcile after a start sees every Channel and CustomerKey at once (no partial re-render).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from newapi_operator.version import __version__

from . import constants as c
from .applier import Applier
from .events import EventRecorder
from .kube import KubeClient
from .workqueue import WorkQueue

log = logging.getLogger("newapi_operator.controller.runtime")

NsName = tuple[str, str]

#: Names of the Kopf indexes (the index functions in :mod:`.handlers` carry these names).
INDEX_INSTANCES = "instances_by_namespace"
INDEX_CHANNELS = "channels_by_namespace"
INDEX_CHANNEL_SECRETS = "channels_by_secret"
INDEX_KEYS = "customerkeys_by_instance"
INDEX_NAMES = (INDEX_INSTANCES, INDEX_CHANNELS, INDEX_CHANNEL_SECRETS, INDEX_KEYS)

DEFAULT_GATEWAY_IMAGE = f"ghcr.io/openova-io/newapi-operator:{__version__}"


@dataclass
class OperatorConfig:
    """What ``newapi operator`` was started with."""

    namespaces: list[str] = field(default_factory=list)  # empty = all namespaces
    gateway_image: str = DEFAULT_GATEWAY_IMAGE
    operator_namespace: str | None = None
    #: Admin API base URL template ({name}, {namespace}); None = the instance's Service.
    admin_url: str | None = None
    usage_refresh_seconds: float = 300.0
    #: At most this many usage reads per second across all CustomerKeys.
    usage_rate: float = 20.0
    identity: str = "newapi-operator"
    instance_workers: int = 4
    channel_workers: int = 4
    key_workers: int = 16

    def admin_base_url(self, namespace: str, name: str) -> str:
        if self.admin_url:
            return self.admin_url.format(namespace=namespace, name=name).rstrip("/")
        return f"http://{name}.{namespace}.svc:{c.ADMIN_PORT}"


class SecretCache:
    """``data`` of the Secrets channels reference, kept fresh by the Secret watch (GET on a miss)."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self._data: dict[NsName, dict[str, str] | None] = {}

    def observe(self, namespace: str, name: str, data: Mapping[str, str] | None) -> bool:
        """A watch event for a Secret; True when the Secret is one we cache (someone references it)."""
        key = (namespace, name)
        if key not in self._data:
            return False
        self._data[key] = None if data is None else dict(data)
        return True

    def remember(self, namespace: str, name: str) -> None:
        """Start caching a Secret (the next watch event fills it)."""
        self._data.setdefault((namespace, name), None)

    async def get_many(self, namespace: str, names: Iterable[str]) -> dict[str, dict[str, str] | None]:
        out: dict[str, dict[str, str] | None] = {}
        missing = []
        for name in set(names):
            key = (namespace, name)
            if key in self._data and self._data[key] is not None:
                out[name] = self._data[key]
            else:
                missing.append(name)
        sem = asyncio.Semaphore(16)

        async def fetch(name: str) -> None:
            async with sem:
                obj = await self.client.get("v1", "Secret", namespace, name)
            data = None if obj is None else dict(obj.get("data") or {})
            self._data[(namespace, name)] = data
            out[name] = data

        await asyncio.gather(*(fetch(n) for n in missing))
        return out


class Discovery:
    """Which optional APIs the cluster serves (cached for ``ttl`` seconds)."""

    def __init__(self, client: KubeClient, ttl: float = 30.0) -> None:
        self.client = client
        self.ttl = ttl
        self._cache: dict[tuple[str, str, str], tuple[float, bool]] = {}

    async def served(self, group: str, version: str, plural: str) -> bool:
        key = (group, version, plural)
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        value = await self.client.served(group, version, plural)
        self._cache[key] = (time.monotonic(), value)
        return value

    def invalidate(self) -> None:
        self._cache.clear()


class RateLimiter:
    """At most ``rate`` entries per second (``async with limiter:``), spread evenly."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> None:
        async with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        return None


class Runtime:
    """Shared state of one operator process."""

    def __init__(self, config: OperatorConfig, client: KubeClient) -> None:
        self.config = config
        self.client = client
        self.applier = Applier(client)
        self.events = EventRecorder(client, config.identity)
        self.secrets = SecretCache(client)
        self.discovery = Discovery(client)
        self.indexes: dict[str, Any] = {}
        #: resourceVersion of our own last status write per (kind, namespace, name).
        self.own_status: dict[tuple[str, str, str], str] = {}
        #: generation of each instance at its last event (a change re-checks its CustomerKeys).
        self.instance_generations: dict[NsName, int | None] = {}
        #: generation of each CustomerKey when it was last enqueued (metadata-only changes are skipped).
        self.key_generations: dict[NsName, int | None] = {}
        self.instance_queue: WorkQueue[NsName] | None = None
        self.channel_queue: WorkQueue[NsName] | None = None
        self.key_queue: WorkQueue[NsName] | None = None
        #: Admin tokens by (namespace, instance) with their expiry (monotonic seconds).
        self.admin_tokens: dict[NsName, tuple[str, float]] = {}
        self.admin_http = httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0), trust_env=False,
                                            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16))
        self.usage_limiter = RateLimiter(config.usage_rate)

    async def close(self) -> None:
        for queue in (self.instance_queue, self.channel_queue, self.key_queue):
            if queue is not None:
                await queue.stop()
        await self.admin_http.aclose()
        await self.client.close()

    # -- indexes ----------------------------------------------------------------------------------

    def bind_indexes(self, kwargs: Mapping[str, Any]) -> None:
        for name in INDEX_NAMES:
            if name in kwargs:
                self.indexes[name] = kwargs[name]

    def _store(self, index: str, key: Any) -> list[Any]:
        idx = self.indexes.get(index)
        if idx is None or key not in idx:
            return []
        return list(idx[key])

    def channels_in(self, namespace: str) -> list[dict[str, Any]]:
        """Snapshots of the Channels of a namespace."""
        return self._store(INDEX_CHANNELS, namespace)

    def instances_in(self, namespace: str) -> list[str]:
        return sorted({str((b.get("metadata") or {}).get("name")) for b in self._store(INDEX_INSTANCES, namespace)})

    def instance_snapshot(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The indexed instance (identity, labels, spec), None when there is none."""
        for body in self._store(INDEX_INSTANCES, namespace):
            if (body.get("metadata") or {}).get("name") == name and not body["metadata"].get("deletionTimestamp"):
                return dict(body)
        return None

    def channels_of_secret(self, namespace: str, secret: str) -> list[str]:
        return sorted(set(self._store(INDEX_CHANNEL_SECRETS, (namespace, secret))))

    def keys_of_instance(self, namespace: str, instance: str) -> list[str]:
        return sorted(set(self._store(INDEX_KEYS, (namespace, instance))))

    # -- own writes -------------------------------------------------------------------------------

    def note_status_write(self, kind: str, namespace: str, name: str, result: Mapping[str, Any]) -> None:
        rv = (result.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.own_status[(kind, namespace, name)] = str(rv)

    def is_own_status_write(self, kind: str, namespace: str, name: str, resource_version: str | None) -> bool:
        return resource_version is not None and self.own_status.get((kind, namespace, name)) == resource_version
