"""The one place that relies on kmock (pinned: ``kmock==0.8``) beyond its documented API.

Design: kmock's :class:`kmock.KubernetesEmulator` is the base handler. It keeps what kmock
does well: an aiohttp-callable handler, its DSL of scripted reactions (``emulator[...] << ...``,
handy to inject faults in tests; they take precedence), a request log for assertions, and
error accumulation. The Kubernetes semantics are served by :class:`.service.ApiService`
instead of kmock 0.8's fallback reactions, because those differ from a real API server in ways
that cannot be fixed by extension (its path parser fails on ``/api/v1/namespaces``; objects
get no metadata; watches replay everything; and every request re-scans the whole request log,
so latency grows with the number of requests served).

Each reliance on a kmock internal is marked ``KMOCK-INTERNAL`` below; if a kmock upgrade
breaks one, this module is the only one to change.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
from typing import Any

import attrs
import kmock
from aiohttp import web

from .errors import ApiError, internal
from .routing import flag, parse_path
from .service import ApiService, error_response

log = logging.getLogger(__name__)


def _action(method: str, name: str | None, watch: bool) -> kmock.action | None:
    if method == "GET":
        return kmock.action.WATCH if watch else (kmock.action.LIST if name is None else kmock.action.FETCH)
    return {
        "POST": kmock.action.CREATE,
        "PUT": kmock.action.UPDATE,
        "PATCH": kmock.action.UPDATE,
        "DELETE": kmock.action.DELETE,
    }.get(method)


def make_request(raw: web.BaseRequest, body: bytes, ident: int) -> kmock.Request:
    """A :class:`kmock.Request` (public constructor) parsed with our router, for the log and the DSL."""
    route = parse_path(raw.path)
    try:
        data: Any = json.loads(body) if body else None
    except ValueError:
        data = None
    try:
        watch = bool(flag(raw.query, "watch"))
    except ApiError:  # an invalid value: the service answers 400; the log records a plain GET
        watch = False
    return kmock.Request(
        id=ident,
        method=raw.method,
        url=raw.url,
        params=dict(raw.query),
        headers=dict(raw.headers),
        cookies=dict(raw.cookies),
        body=body,
        text=body.decode(errors="replace"),
        data=data,
        action=None if route is None else _action(raw.method, route.name, watch),
        resource=None if route is None else kmock.resource(route.group, route.version, route.plural),
        namespace=None if route is None else route.namespace,
        name=None if route is None else route.name,
        subresource=None if route is None else route.subresource,
        raw_request=raw,
    )


@attrs.define(kw_only=True)
class KmockEmulator(kmock.KubernetesEmulator):
    """kmock's emulator serving Kubernetes semantics from an :class:`ApiService`.

    ``emulator[...] << payload`` reactions (kmock's DSL) are served first when they match;
    every other request goes to the service. The request log keeps the last ``log_size``
    requests (iterate the emulator or its views to assert on them).
    """

    service: ApiService
    log_size: int = 1000
    _counter: Any = attrs.field(factory=itertools.count, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # KMOCK-INTERNAL: RawHandler._payloads holds the reactions. kmock's emulator registers
        # its own fallback reactions here at init; drop them so only user reactions remain.
        self._payloads.clear()
        # KMOCK-INTERNAL: Root._requests is the request log (a list in 0.8, never trimmed, and
        # scanned per request by reactions). A bounded deque keeps per-request cost flat.
        self._requests = collections.deque(maxlen=self.log_size)  # type: ignore[assignment]

    @property
    def user_reactions(self) -> bool:
        return bool(self._payloads)  # KMOCK-INTERNAL: see __attrs_post_init__

    async def __call__(self, raw_request: web.BaseRequest) -> web.StreamResponse:
        """The aiohttp entry point (kmock's documented way to embed a handler in a server)."""
        body = await raw_request.read()
        request = make_request(raw_request, body, next(self._counter))
        self._requests.append(request)  # KMOCK-INTERNAL: the request log, see __attrs_post_init__
        if self._payloads:
            try:
                # KMOCK-INTERNAL: RawHandler._handle matches the DSL reactions and raises
                # NotImplementedError when none matches; KubernetesEmulator._handle (which would
                # also mutate kmock's own object store) is skipped on purpose.
                return await kmock.RawHandler._handle(self, request)
            except NotImplementedError:
                pass
            except Exception as exc:
                self._remember(exc)
                return await self._render_error(exc)  # KMOCK-INTERNAL: kmock's Status rendering
        try:
            return await self.service.handle(raw_request, body)
        except Exception as exc:
            log.exception("local API server: internal error on %s %s", raw_request.method, raw_request.path_qs)
            self._remember(exc)
            return error_response(internal(repr(exc)))

    def _remember(self, exc: Exception) -> None:
        # KMOCK-INTERNAL: RawHandler._errors is the per-context list behind ``.errors``.
        if self._errors:
            self._errors[-1].append(exc)
