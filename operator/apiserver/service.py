"""The HTTP face of the local API server: routes aiohttp requests to the store and discovery.

Requests are answered as a real API server does: JSON objects, ``Status`` bodies for errors,
201 on create, chunked JSON-lines for watches (``watch`` in any spelling ``ParseBool`` accepts),
``Warning`` headers for pruned unknown fields (``fieldValidation=Warn``, the default) or 400
for them (``Strict``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import yaml
from aiohttp import web

from . import discovery
from . import errors as e
from . import table as tables
from .errors import ApiError
from .resources import ResourceType
from .routing import Route, field_validation, flag, integer, parse_path
from .selectors import SelectorError, parse_field_selector, parse_label_selector
from .store import Obj, Store, Watcher, dry_run_flag

log = logging.getLogger(__name__)

JSON = "application/json"
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "unsupported",
}
#: Server default for watches without ``timeoutSeconds`` (a real server picks 30-60 minutes).
DEFAULT_WATCH_TIMEOUT = 1800.0


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def respond(obj: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    response = web.Response(body=dumps(obj), status=status, content_type=JSON)
    for warning in warnings or []:
        response.headers.add("Warning", f'299 - "{warning}"')
    return response


def error_response(error: ApiError) -> web.Response:
    return respond(error.status(), status=error.code)


class ApiService:
    """Serves one store over HTTP (no kmock here; see ``_kmock_compat`` for the kmock glue)."""

    def __init__(self, store: Store, *, bookmark_interval: float = 60.0) -> None:
        self.store = store
        self.registry = store.registry
        self.bookmark_interval = bookmark_interval
        self.closing = False

    async def handle(self, raw: web.BaseRequest, body: bytes) -> web.StreamResponse:
        try:
            return await self._dispatch(raw, body)
        except ApiError as error:
            return error_response(error)

    # -----------------------------------------------------------------------------------------

    async def _dispatch(self, raw: web.BaseRequest, body: bytes) -> web.StreamResponse:
        path, method = raw.path, raw.method
        if method == "GET":
            static = self._static(raw, path)
            if static is not None:
                return static
        route = parse_path(path)
        if route is None:
            raise e.resource_not_found(path)
        rtype = self.registry.get(route.group, route.version, route.plural)
        if rtype is None or (route.namespace is not None and not rtype.namespaced):
            raise e.resource_not_found(path)
        if route.subresource is not None and route.subresource not in rtype.subresources:
            raise e.resource_not_found(path)
        query = raw.query
        namespace = route.namespace if rtype.namespaced else None
        if method == "GET":
            view = self._table_view(raw, rtype)
            if route.name is not None:  # a real server ignores ?watch on an object's own path
                obj = self.store.get(rtype, namespace, route.name)
                return respond(view.of_object(obj) if view else obj)
            if flag(query, "watch"):
                return await self._watch(raw, rtype, namespace, view)
            listed = self._list(rtype, namespace, query)
            return respond(view.of_list(listed) if view else listed)
        if method in ("POST", "PUT"):
            self._check_content_type(raw)
        if method == "POST" and route.name is None:
            if rtype.namespaced and namespace is None:
                raise e.method_not_allowed(method)
            obj, pruned = self.store.create(rtype, namespace, self._json(body), dry_run=self._dry_run(raw))
            return respond(obj, 201, self._unknown_fields(raw, pruned))
        if method == "PUT" and route.name is not None:
            obj, pruned = self.store.update(rtype, namespace, route.name, self._json(body),
                                            subresource=route.subresource, dry_run=self._dry_run(raw))
            return respond(obj, 200, self._unknown_fields(raw, pruned))
        if method == "PATCH" and route.name is not None:
            return self._patch(raw, body, rtype, route, namespace)
        if method == "DELETE" and route.name is not None and route.subresource is None:
            return self._delete(raw, body, rtype, namespace, route.name)
        if method == "DELETE" and route.name is None:
            return self._delete_collection(raw, body, rtype, namespace)
        raise e.method_not_allowed(method)

    def _static(self, raw: web.BaseRequest, path: str) -> web.StreamResponse | None:
        path = path.rstrip("/") or "/"
        if path == "/":
            return respond(discovery.root_paths(self.registry))
        if path == "/version":
            return respond(discovery.version())
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok", content_type="text/plain")
        if path == "/api":
            return respond(discovery.api_versions(raw.host))
        if path == "/apis":
            return respond(discovery.api_group_list(self.registry))
        parts = path.strip("/").split("/")
        doc: dict[str, Any] | None = None
        if parts[0] == "api" and len(parts) == 2:
            doc = discovery.api_resource_list(self.registry, "", parts[1])
        elif parts[0] == "apis" and len(parts) == 2:
            doc = discovery.api_group(self.registry, parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            doc = discovery.api_resource_list(self.registry, parts[1], parts[2])
        else:
            return None
        if doc is None:
            raise e.resource_not_found(path)
        return respond(doc)

    @staticmethod
    def _check_content_type(raw: web.BaseRequest) -> None:
        content_type = raw.headers.get("Content-Type", JSON).split(";")[0].strip().lower()
        if content_type not in (JSON, "", "*/*", "text/plain"):
            raise ApiError(
                415, "UnsupportedMediaType",
                f"the local API server accepts JSON request bodies only, not {content_type!r} (kubectl's "
                "typed generators such as `kubectl create namespace` send protobuf; use "
                "`kubectl create -f FILE --validate=false` or `kubectl apply -f FILE --validate=false`)",
            )

    @staticmethod
    def _json(body: bytes) -> Any:
        if not body:
            raise e.bad_request("the request body is empty; send the object as JSON")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise e.bad_request(f"the request body is not valid JSON: {exc}") from None

    @staticmethod
    def _dry_run(raw: web.BaseRequest) -> bool:
        return dry_run_flag(raw.query.getall("dryRun", []))

    @staticmethod
    def _unknown_fields(raw: web.BaseRequest, pruned: list[str]) -> list[str]:
        if not pruned:
            return []
        mode = field_validation(raw.query)
        if mode == "Strict":
            listed = ", ".join(f'unknown field "{p}"' for p in pruned)
            raise e.bad_request(f"strict decoding error: {listed}")
        return [f'unknown field \\"{p}\\"' for p in pruned] if mode == "Warn" else []

    # -----------------------------------------------------------------------------------------

    @staticmethod
    def _table_view(raw: web.BaseRequest, rtype: ResourceType) -> tables.TableView | None:
        """Server-side table output when the Accept header asks for a ``meta.k8s.io`` Table."""
        api_version = tables.negotiate(raw.headers.get("Accept"))
        if api_version is None:
            return None
        return tables.TableView(rtype, api_version, tables.include_object(raw.query))

    def _list(self, rtype: ResourceType, namespace: str | None, query: Any) -> dict[str, Any]:
        labels, fields = self._selectors_from(query)
        result = self.store.list_objects(rtype, namespace, labels, fields, limit=integer(query, "limit"),
                                 continue_token=query.get("continue") or None)
        meta: dict[str, Any] = {"resourceVersion": str(result.resource_version)}
        if result.continue_token:
            meta["continue"] = result.continue_token
        if result.remaining is not None:
            meta["remainingItemCount"] = result.remaining
        items = result.items
        if not rtype.custom:  # a real server omits kind/apiVersion on items of built-in lists
            items = [{k: v for k, v in item.items() if k not in ("kind", "apiVersion")} for item in items]
        return {"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version, "metadata": meta, "items": items}

    @staticmethod
    def _selectors_from(query: Any) -> tuple[Any, Any]:
        try:
            return (parse_label_selector(query.get("labelSelector")), parse_field_selector(query.get("fieldSelector")))
        except SelectorError as exc:
            raise e.bad_request(str(exc)) from None

    def _patch(
        self, raw: web.BaseRequest, body: bytes, rtype: ResourceType, route: Route, namespace: str | None
    ) -> web.Response:
        assert route.name is not None
        content_type = raw.headers.get("Content-Type", "").split(";")[0].strip()
        patch_type = PATCH_TYPES.get(content_type)
        if patch_type is None or patch_type == "unsupported":
            raise e.unsupported_media_type(content_type)
        if patch_type == "apply":
            try:
                document = yaml.safe_load(body.decode() or "null")
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                raise e.bad_request(f"error decoding YAML: {exc}") from None
        else:
            document = self._json(body)
        force = bool(flag(raw.query, "force"))
        obj, created, pruned = self.store.patch(
            rtype, namespace, route.name, patch_type, document, subresource=route.subresource,
            dry_run=self._dry_run(raw), manager=raw.query.get("fieldManager"), force=force,
        )
        return respond(obj, 201 if created else 200, self._unknown_fields(raw, pruned))

    def _delete_options(self, raw: web.BaseRequest, body: bytes) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if body.strip():
            parsed = self._json(body)
            if not isinstance(parsed, dict):
                raise e.bad_request("DeleteOptions must be an object")
            options = parsed
        query = raw.query
        if "propagationPolicy" in query:
            options["propagationPolicy"] = query["propagationPolicy"]
        if options.get("orphanDependents") and not options.get("propagationPolicy"):
            options["propagationPolicy"] = "Orphan"
        dry = query.getall("dryRun", []) or list(options.get("dryRun") or [])
        options["dryRun"] = dry_run_flag(dry)
        return options

    def _delete(
        self, raw: web.BaseRequest, body: bytes, rtype: ResourceType, namespace: str | None, name: str
    ) -> web.Response:
        options = self._delete_options(raw, body)
        obj, as_status = self.store.delete(
            rtype, namespace, name, propagation=options.get("propagationPolicy"),
            preconditions=options.get("preconditions"), dry_run=options["dryRun"],
        )
        if not as_status:
            return respond(obj)
        return respond({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": rtype.group, "kind": rtype.plural, "uid": obj["metadata"]["uid"]},
        })

    def _delete_collection(
        self, raw: web.BaseRequest, body: bytes, rtype: ResourceType, namespace: str | None
    ) -> web.Response:
        options = self._delete_options(raw, body)
        labels, fields = self._selectors_from(raw.query)
        listed = self.store.list_objects(rtype, namespace, labels, fields)
        deleted: list[Obj] = []
        for item in listed.items:
            meta = item["metadata"]
            with contextlib.suppress(ApiError):
                obj, _ = self.store.delete(rtype, meta.get("namespace"), meta["name"],
                                           propagation=options.get("propagationPolicy"), dry_run=options["dryRun"])
                deleted.append(obj)
        return respond({"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version,
                        "metadata": {"resourceVersion": str(self.store.rv)}, "items": deleted})

    # -----------------------------------------------------------------------------------------
    # Watching
    # -----------------------------------------------------------------------------------------

    async def _watch(
        self, raw: web.BaseRequest, rtype: ResourceType, namespace: str | None, view: tables.TableView | None
    ) -> web.StreamResponse:
        labels, fields = self._selectors_from(raw.query)
        timeout = integer(raw.query, "timeoutSeconds")
        bookmarks = bool(flag(raw.query, "allowWatchBookmarks"))
        send_initial = flag(raw.query, "sendInitialEvents")
        response = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        try:
            watcher, initial = self.store.watch(rtype, namespace, labels, fields, raw.query.get("resourceVersion"),
                                                send_initial_events=send_initial)
        except ApiError as error:
            if error.code != 410:
                raise
            await response.prepare(raw)
            await response.write(dumps({"type": "ERROR", "object": error.status()}) + b"\n")
            await response.write_eof()
            return response
        try:
            await response.prepare(raw)
            encode = view.watch_object if view else _same
            for event_type, obj in initial:
                await response.write(dumps({"type": event_type, "object": encode(obj)}) + b"\n")
            if send_initial and bookmarks:
                await self._bookmark(response, rtype, encode, initial_end=True)
            await self._stream(raw, response, watcher, rtype, timeout, bookmarks, encode)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            watcher.close()
            self.store.unwatch(watcher)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    async def _stream(
        self,
        raw: web.BaseRequest,
        response: web.StreamResponse,
        watcher: Watcher,
        rtype: ResourceType,
        seconds: int | None,
        bookmarks: bool,
        encode: Callable[[Obj], Obj],
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (DEFAULT_WATCH_TIMEOUT if seconds is None else float(seconds))
        next_bookmark = loop.time() + self.bookmark_interval
        while not self.closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            wait = min(remaining, 5.0)
            if bookmarks:
                wait = max(0.01, min(wait, next_bookmark - loop.time()))
            try:
                item = await asyncio.wait_for(watcher.queue.get(), timeout=wait)
            except TimeoutError:
                if raw.transport is None or raw.transport.is_closing():
                    return  # the client went away
                if bookmarks and loop.time() >= next_bookmark and watcher.queue.empty():
                    await self._bookmark(response, rtype, encode)
                    next_bookmark = loop.time() + self.bookmark_interval
                continue
            if item is None:
                return
            event_type, obj = item
            await response.write(dumps({"type": event_type, "object": encode(self.store.present(rtype, obj))}) + b"\n")

    async def _bookmark(
        self,
        response: web.StreamResponse,
        rtype: ResourceType,
        encode: Callable[[Obj], Obj],
        *,
        initial_end: bool = False,
    ) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": meta}
        await response.write(dumps({"type": "BOOKMARK", "object": encode(obj)}) + b"\n")


def _same(obj: Obj) -> Obj:
    return obj
