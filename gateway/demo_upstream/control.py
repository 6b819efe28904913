"""A small synchronous client of the demo upstream's control API (``/__demo/...``).

Used by tests, the benchmark and ``newapi dev``; it only talks HTTP, so it works against a demo
upstream in any process.
"""

from __future__ import annotations

import time
from typing import Any

import httpx


class DemoUpstreamError(RuntimeError):
    """The demo upstream refused a control call or could not be reached."""


class DemoUpstreamControl:
    """Control handle of one demo upstream reachable at ``url`` (``http://host:port``)."""

    def __init__(self, url: str, name: str = "demo", timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.name = name
        self._timeout = timeout

    # base URLs for clients -------------------------------------------------------------------

    @property
    def openai_base_url(self) -> str:
        """Base URL for OpenAI clients and openai-compatible/vllm channels (``…/v1``)."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for Anthropic clients and anthropic channels (they append ``/v1/messages``)."""
        return self.url

    def base_url(self, prefix: str) -> str:
        """A distinct OpenAI base URL on the same server (``{url}/{prefix}/v1``), e.g. one per channel."""
        return f"{self.url}/{prefix.strip('/')}/v1"

    # control calls -----------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = httpx.request(method, f"{self.url}/__demo/{path}", timeout=self._timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise DemoUpstreamError(f"demo upstream {self.name} at {self.url} is unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise DemoUpstreamError(
                f"demo upstream {self.name}: {method} /__demo/{path} -> {response.status_code}: {response.text}"
            )
        return response.json()

    def info(self) -> dict[str, Any]:
        """Name, models, number of keys, ``requests_total``, active rules."""
        result: dict[str, Any] = self._call("GET", "info")
        return result

    def requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Recorded requests, oldest first: ``seq, time, method, path, endpoint, headers`` (lower-case
        names, values as received, credentials included), ``body`` (parsed JSON or text), ``status``
        (the status answered; 0 = dropped/hung) and ``behavior`` (non-default fields applied)."""
        params = {"limit": str(limit)} if limit is not None else None
        result: list[dict[str, Any]] = self._call("GET", "requests", params=params)["requests"]
        return result

    def last_request(self) -> dict[str, Any]:
        """The most recent recorded request (error when none was recorded)."""
        recorded = self.requests(limit=1)
        if not recorded:
            raise DemoUpstreamError(f"demo upstream {self.name} has recorded no request")
        return recorded[0]

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Poll until at least ``count`` requests are recorded; return them."""
        deadline = time.monotonic() + timeout
        while True:
            recorded = self.requests()
            if len(recorded) >= count:
                return recorded
            if time.monotonic() > deadline:
                raise DemoUpstreamError(
                    f"demo upstream {self.name}: expected {count} requests within {timeout}s, saw {len(recorded)}"
                )
            time.sleep(0.02)

    def clear_requests(self) -> None:
        self._call("DELETE", "requests")

    def set_behavior(self, spec: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """Add a rule: behaviour fields (``status``, ``delay_ms``, ...) plus optional ``times``,
        ``endpoint``, ``model``, ``stream`` filters. ``spec`` is the ``key=value; ...`` form."""
        if spec is not None and fields:
            raise ValueError("give either a spec string or keyword fields, not both")
        if spec is not None:
            result: list[dict[str, Any]] = self._call("POST", "behavior", content=spec.encode())["rules"]
        else:
            result = self._call("POST", "behavior", json=fields)["rules"]
        return result

    def fail_next(self, count: int, status: int = 503, **fields: Any) -> list[dict[str, Any]]:
        """Answer the next ``count`` (matching) requests with ``status``."""
        return self.set_behavior(status=status, times=count, **fields)

    def rules(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "behavior")["rules"]
        return result

    def clear_behavior(self) -> None:
        self._call("DELETE", "behavior")

    def reset(self) -> None:
        """Forget rules, recorded requests and cached answers."""
        self._call("POST", "reset")
