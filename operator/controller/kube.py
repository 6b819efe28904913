"""A small async Kubernetes REST client (aiohttp) for the operator's own reads and writes.

Kopf watches; this client reads and writes: get, server-side apply, merge patch (status),
create, delete, Events, discovery. It logs in from a kubeconfig file or the in-cluster service
account through kubernetes-asyncio's loaders (exec and OIDC plugins included), and hands the same
credentials to Kopf (:meth:`KubeClient.connection_info`), so both use one identity.

Transient failures (connection errors, 429, 500, 502, 503, 504) are retried a few times with
backoff (``Retry-After`` honoured) before :class:`ApiError` is raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from newapi_operator.version import __version__

log = logging.getLogger("newapi_operator.controller.kube")

USER_AGENT = f"newapi-operator/{__version__}"
TRANSIENT = frozenset({429, 500, 502, 503, 504})

#: apiVersion/kind -> plural for the kinds the operator touches.
PLURALS: dict[tuple[str, str], str] = {
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("v1", "Service"): "services",
    ("v1", "Event"): "events",
    ("v1", "Namespace"): "namespaces",
    ("apps/v1", "Deployment"): "deployments",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
    ("networking.k8s.io/v1", "Ingress"): "ingresses",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("external-secrets.io/v1beta1", "ExternalSecret"): "externalsecrets",
    ("newapi.openova.io/v1alpha1", "NewAPIInstance"): "newapiinstances",
    ("newapi.openova.io/v1alpha1", "Channel"): "channels",
    ("newapi.openova.io/v1alpha1", "CustomerKey"): "customerkeys",
    ("kopf.dev/v1", "ClusterKopfPeering"): "clusterkopfpeerings",
    ("kopf.dev/v1", "KopfPeering"): "kopfpeerings",
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): "customresourcedefinitions",
}
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterKopfPeering", "CustomResourceDefinition"})


class ApiError(Exception):
    """A non-2xx answer (or no answer) from the API server."""

    def __init__(self, status: int, reason: str, message: str, method: str = "", path: str = "") -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{method} {path}: {status} {reason}: {message}".strip())

    @property
    def transient(self) -> bool:
        return self.status in TRANSIENT or self.status == 0

    @property
    def conflict(self) -> bool:
        return self.status == 409


def resource_path(api_version: str, kind: str, namespace: str | None = None, name: str | None = None,
                  subresource: str | None = None) -> str:
    """``/api/v1/namespaces/ns/configmaps/name`` and the like."""
    plural = PLURALS.get((api_version, kind))
    if plural is None:
        raise ValueError(f"unknown kind {api_version}/{kind}; add it to newapi_operator.controller.kube.PLURALS")
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace is not None and kind not in CLUSTER_SCOPED:
        base += f"/namespaces/{namespace}"
    path = f"{base}/{plural}"
    if name is not None:
        path += f"/{name}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


def object_path(obj: Mapping[str, Any], subresource: str | None = None) -> str:
    meta = obj.get("metadata") or {}
    return resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta.get("name"), subresource)


@dataclass
class Credentials:
    """Where and how to connect (what kubernetes-asyncio's loaders found)."""

    server: str
    token: str | None = None
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    insecure: bool = False
    default_namespace: str | None = None


async def load_credentials(kubeconfig: str | None = None, context: str | None = None) -> tuple[Credentials, Any]:
    """Credentials from ``kubeconfig`` (or ``$KUBECONFIG``/``~/.kube/config``), else in-cluster.

    Returns the credentials and the kubernetes-asyncio ``Configuration`` (its token refresh hook
    renews expiring tokens).
    """
    from kubernetes_asyncio import config as kconfig
    from kubernetes_asyncio.client import Configuration

    cfg = type.__call__(Configuration)
    if kubeconfig:
        await kconfig.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
    else:
        try:
            kconfig.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except kconfig.ConfigException:
            await kconfig.load_kube_config(context=context, client_configuration=cfg)
    header = await cfg.get_api_key_with_prefix("BearerToken")
    token = header.split(" ", 1)[-1] if header else None
    return Credentials(
        server=str(cfg.host).rstrip("/"),
        token=token,
        ca_path=cfg.ssl_ca_cert,
        cert_path=cfg.cert_file,
        key_path=cfg.key_file,
        insecure=not cfg.verify_ssl,
    ), cfg


class KubeClient:
    """Async REST client; use :meth:`connect` to build one from a kubeconfig or in-cluster config."""

    def __init__(self, creds: Credentials, configuration: Any = None, *, timeout: float = 30.0,
                 max_connections: int = 16) -> None:
        self.creds = creds
        self._cfg = configuration
        self._ssl: ssl.SSLContext | None = None
        if creds.server.startswith("https:"):
            self._ssl = ssl.create_default_context(cafile=creds.ca_path)
            if creds.insecure:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
            if creds.cert_path:
                self._ssl.load_cert_chain(creds.cert_path, creds.key_path)
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=10.0)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.writes = 0

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl or False),
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                trust_env=False,
            )
        return self._session

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeClient:
        creds, cfg = await load_credentials(kubeconfig, context)
        return cls(creds, cfg)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def connection_info(self) -> Any:
        """The same credentials as a ``kopf.ConnectionInfo`` (for ``@kopf.on.login``)."""
        import kopf

        return kopf.ConnectionInfo(
            server=self.creds.server,
            ca_path=self.creds.ca_path,
            insecure=self.creds.insecure or None,
            token=self.creds.token,
            scheme="Bearer" if self.creds.token else None,
            certificate_path=self.creds.cert_path,
            private_key_path=self.creds.key_path,
            default_namespace=self.creds.default_namespace,
        )

    async def _auth_headers(self) -> dict[str, str]:
        if self._cfg is not None and getattr(self._cfg, "refresh_api_key_hook", None) is not None:
            header = await self._cfg.get_api_key_with_prefix("BearerToken")
            if header:
                self.creds.token = header.split(" ", 1)[-1]
        return {"Authorization": f"Bearer {self.creds.token}"} if self.creds.token else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        attempts: int = 4,
    ) -> dict[str, Any]:
        """One API call with retries on transient failures; the decoded JSON answer."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        delay = 0.2
        for attempt in range(1, attempts + 1):
            headers = await self._auth_headers()
            if data is not None:
                headers["Content-Type"] = content_type
            self.requests += 1
            if method != "GET":
                self.writes += 1
            retry_after = None
            try:
                url = self.creds.server + path  # servers may carry a path prefix (e.g. behind Rancher)
                async with self._http().request(method, url, params=params, data=data, headers=headers) as rsp:
                    raw = await rsp.read()
                    if rsp.status < 400:
                        return json.loads(raw) if raw else {}
                    error = _error(rsp.status, rsp.reason or "", raw, method, path)
                    retry_after = rsp.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = ApiError(0, "ConnectionError", f"{type(exc).__name__}: {exc}", method, path)
            if not error.transient or attempt == attempts:
                raise error
            wait = delay * (1 + random.random() * 0.5)
            if retry_after and retry_after.isdigit():
                wait = max(wait, min(float(retry_after), 10.0))
            log.info("transient API error; retrying", extra={"path": path, "status": error.status, "wait_s": wait})
            await asyncio.sleep(wait)
            delay = min(delay * 2.5, 5.0)
        raise AssertionError("unreachable")

    # -- verbs ------------------------------------------------------------------------------------

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", resource_path(api_version, kind, namespace, name))
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def list(self, api_version: str, kind: str, namespace: str | None = None, *,
                   label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        doc = await self.request("GET", resource_path(api_version, kind, namespace), params=params)
        return list(doc.get("items") or [])

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        path = resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        return await self.request("POST", path, body=obj)

    async def apply(self, obj: Mapping[str, Any], field_manager: str, *, force: bool = True) -> dict[str, Any]:
        """Server-side apply (creates the object when missing)."""
        params = {"fieldManager": field_manager, "force": "true" if force else "false"}
        return await self.request("PATCH", object_path(obj), params=params, body=obj,
                                  content_type="application/apply-patch+yaml")

    async def merge_patch(self, api_version: str, kind: str, namespace: str | None, name: str,
                          patch: Mapping[str, Any], subresource: str | None = None) -> dict[str, Any]:
        return await self.request("PATCH", resource_path(api_version, kind, namespace, name, subresource),
                                  body=patch, content_type="application/merge-patch+json")

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str, *,
                     uid: str | None = None, propagation: str = "Background") -> bool:
        """Delete (with a uid precondition when given); False when already gone."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self.request("DELETE", resource_path(api_version, kind, namespace, name), body=body)
        except ApiError as err:
            if err.status == 404:
                return False
            raise
        return True

    async def served(self, group: str, version: str, plural: str) -> bool:
        """Discovery: whether ``group/version`` serves ``plural``."""
        try:
            doc = await self.request("GET", f"/apis/{group}/{version}", attempts=2)
        except ApiError as err:
            if err.status in (404, 503):
                return False
            raise
        return any(r.get("name") == plural for r in doc.get("resources") or [])


def _error(status: int, reason: str, body: bytes, method: str, path: str) -> ApiError:
    message = body[:500].decode(errors="replace")
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        reason = str(doc.get("reason") or reason)
        message = str(doc.get("message") or message)
    return ApiError(status, reason, message, method, path)
