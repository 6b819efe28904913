"""Client of the gateway's admin API (docs/admin-api.md), as the CustomerKey reconciler uses it.

Every call carries ``Authorization: Bearer <admin token>``. Errors come back OpenAI-shaped
(``{"error": {"message", "type", "param", "code"}}``) and are raised as :class:`AdminApiError`;
connection failures and 502/503/504 are :attr:`AdminApiError.transient` (the caller retries
with backoff). Money is integer micro-credits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

BASE = "/api/v1/admin"


class AdminApiError(Exception):
    """A non-2xx answer (status 0: no answer at all)."""

    def __init__(self, status: int, message: str, code: str | None = None, method: str = "", path: str = "") -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"admin API {method} {path}: {status} {code or ''} {message}".replace("  ", " ").strip())

    @property
    def transient(self) -> bool:
        return self.status in (0, 429, 502, 503, 504)


class AdminClient:
    """One gateway's admin API at ``base_url`` (e.g. ``http://newapi.ns.svc:8081``)."""

    def __init__(self, base_url: str, token: str, http: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.http = http
        self.calls = 0

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                    params: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        url = f"{self.base_url}{BASE}{path}"
        self.calls += 1
        try:
            rsp = await self.http.request(method, url, json=body, params=params,
                                          headers={"Authorization": f"Bearer {self.token}"})
        except httpx.HTTPError as exc:
            raise AdminApiError(0, f"{type(exc).__name__}: {exc}", None, method, path) from None
        try:
            doc = rsp.json() if rsp.content else {}
        except ValueError:
            doc = {"error": {"message": rsp.text[:300]}}
        if rsp.status_code >= 400:
            err = (doc.get("error") or {}) if isinstance(doc, dict) else {}
            raise AdminApiError(rsp.status_code, str(err.get("message") or rsp.reason_phrase),
                                err.get("code") or err.get("type"), method, path)
        return rsp.status_code, doc if isinstance(doc, dict) else {}

    # -- customers ------------------------------------------------------------------------------

    async def put_customer(self, external_id: str, display_name: str | None) -> dict[str, Any]:
        body = {"displayName": display_name} if display_name else {}
        return (await self._call("PUT", f"/customers/{quote(external_id, safe='')}", body))[1]

    async def balance(self, external_id: str) -> dict[str, Any]:
        return (await self._call("GET", f"/customers/{quote(external_id, safe='')}/balance"))[1]

    async def grant(
        self, external_id: str, amount: int, idempotency_key: str, reason: str
    ) -> tuple[int, dict[str, Any]]:
        """``(201 first time | 200 replay, ledger entry)``; 409 when the key was used with another amount."""
        body = {"amount": amount, "idempotencyKey": idempotency_key, "reason": reason}
        return await self._call("POST", f"/customers/{quote(external_id, safe='')}/credits", body)

    async def ledger(self, external_id: str, limit: int = 100) -> dict[str, Any]:
        return (await self._call("GET", f"/customers/{quote(external_id, safe='')}/ledger",
                                 params={"limit": str(limit)}))[1]

    # -- keys -----------------------------------------------------------------------------------

    async def create_key(self, external_id: str, key_hash: str, key_prefix: str,
                         attributes: Mapping[str, Any]) -> dict[str, Any]:
        """Register a key the caller generated (same hash again: the same record, idempotent)."""
        body = {"keyHash": key_hash, "keyPrefix": key_prefix,
                **{k: v for k, v in attributes.items() if v is not None}}
        return (await self._call("POST", f"/customers/{quote(external_id, safe='')}/keys", body))[1]

    async def get_key(self, key_id: str) -> dict[str, Any] | None:
        try:
            return (await self._call("GET", f"/keys/{quote(key_id, safe='')}"))[1]
        except AdminApiError as err:
            if err.status == 404:
                return None
            raise

    async def patch_key(self, key_id: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
        return (await self._call("PATCH", f"/keys/{quote(key_id, safe='')}", dict(attributes)))[1]

    async def suspend(self, key_id: str) -> dict[str, Any]:
        return (await self._call("POST", f"/keys/{quote(key_id, safe='')}/suspend"))[1]

    async def resume(self, key_id: str) -> dict[str, Any]:
        return (await self._call("POST", f"/keys/{quote(key_id, safe='')}/resume"))[1]

    async def revoke(self, key_id: str) -> dict[str, Any] | None:
        """Revoke (idempotent); None when the gateway does not know the key."""
        try:
            return (await self._call("POST", f"/keys/{quote(key_id, safe='')}/revoke"))[1]
        except AdminApiError as err:
            if err.status == 404:
                return None
            raise
