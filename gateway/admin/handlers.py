"""The admin API's handlers (docs/admin-api.md). One method per route of :data:`routes.ROUTES`."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from aiohttp import web

from newapi_gateway import jsonutil
from newapi_gateway.errors import GatewayError
from newapi_gateway.metering.ids import parse_key_id
from newapi_gateway.store import (
    Conflict,
    Customer,
    IdempotencyConflict,
    KeyRecord,
    LedgerEntry,
    Store,
)
from newapi_gateway.store.keys import generate_key

from . import schemas, views
from .keymeta import KeyMeta
from .openapi import document
from .routes import AdminExtension

log = logging.getLogger("newapi_gateway.admin")

MAX_USAGE_DAYS = 366


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=jsonutil.dumps(body), status=status, headers={"Content-Type": "application/json"})


def not_found(what: str, param: str) -> GatewayError:
    return GatewayError(404, f"{what} does not exist.", code="not_found", param=param)


def conflict(message: str, code: str = "conflict") -> GatewayError:
    return GatewayError(409, message, code=code)


async def read_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = jsonutil.loads(raw)
    except jsonutil.DecodeError:
        raise GatewayError(400, "The request body is not valid JSON.", code="invalid_json") from None
    return schemas.require_object(body)


class AdminHandlers:
    """Handlers over one store and the admin metadata tables."""

    def __init__(self, store: Store, meta: KeyMeta, extensions: tuple[AdminExtension, ...] = ()) -> None:
        self.store = store
        self.meta = meta
        self.extensions = extensions

    # -- lookups ---------------------------------------------------------------------------------

    async def _customer(self, request: web.Request) -> Customer:
        ext = schemas.external_id(request.match_info["externalId"])
        found = await self.store.get_customer(ext)
        if found is None:
            raise not_found(f"Customer {ext!r}", "externalId")
        return found

    async def _key(self, request: web.Request) -> KeyRecord:
        text = request.match_info["keyId"]
        key_id = parse_key_id(text)
        record = await self.store.get_key(key_id) if key_id is not None else None
        if record is None:
            raise not_found(f"Key {text!r}", "keyId")
        return record

    async def _key_view(self, record: KeyRecord, secret: str | None = None) -> dict[str, Any]:
        return views.key(record, await self.meta.label(record.id), secret)

    # -- customers -------------------------------------------------------------------------------

    async def put_customer(self, request: web.Request) -> web.Response:
        ext = schemas.external_id(request.match_info["externalId"])
        body = await read_body(request)
        customer = await self.store.upsert_customer(ext, schemas.display_name(body))
        return json_response(views.customer(customer))

    async def get_customer(self, request: web.Request) -> web.Response:
        customer = await self._customer(request)
        snapshot = await self.store.balance(customer.id)
        return json_response({**views.customer(customer), "balance": views.balance(snapshot)})

    async def create_user(self, request: web.Request) -> web.Response:
        """One-call signup. Order: customer, signup record, credit grant, key — each step idempotent,
        so a retry after any failure completes the signup without granting or issuing twice."""
        s = schemas.signup(await read_body(request))
        customer = await self.store.upsert_customer(s.external_id, s.display_name)
        record = await self.meta.reserve_signup(s.idempotency_key, customer.id)
        if record.customer_id != customer.id:
            raise conflict(f"idempotencyKey {s.idempotency_key!r} was already used for another customer's signup; "
                           "use a new idempotency key", "idempotency_conflict")
        grant: LedgerEntry | None = None
        if s.credit_grant > 0:
            try:
                grant = await self.store.top_up(customer.id, s.credit_grant, f"signup:{s.idempotency_key}",
                                                "signup credit grant")
            except IdempotencyConflict as exc:
                raise conflict(f"this signup was first made with creditGrant {exc.stored_amount}; a replay must "
                               "send the same values", "idempotency_conflict") from None
        secret: str | None = None
        if record.key_id is not None:
            key = await self.store.get_key(record.key_id)
            if key is None:
                raise conflict("the key of this signup no longer exists; use a new idempotency key")
            status = 200
        else:
            new = generate_key()
            key = await self.store.issue_key(customer.id, new.hash, new.prefix, s.attributes.settings)
            winner = await self.meta.finish_signup(s.idempotency_key, key.id)
            if winner != key.id:  # a concurrent replay won: keep its key, drop ours
                await self.store.revoke_key(key.id)
                found = await self.store.get_key(winner)
                assert found is not None
                key, status = found, 200
            else:
                secret, status = new.secret, 201
                if s.attributes.label is not None:
                    await self.meta.set_label(key.id, s.attributes.label)
        return json_response({
            "customer": views.customer(customer),
            "key": await self._key_view(key, secret),
            "creditGrant": views.ledger_entry(grant, customer.external_id) if grant is not None else None,
        }, status)

    # -- keys ------------------------------------------------------------------------------------

    async def create_key(self, request: web.Request) -> web.Response:
        customer = await self._customer(request)
        body = await read_body(request)
        attrs = schemas.key_attributes(body)
        given = schemas.key_hash(body)
        secret: str | None = None
        if given is not None:
            digest, prefix = given
            existing = await self.store.lookup_key(digest)
            if existing is not None:
                return json_response(await self._same_hash(existing, customer), 200)
            try:
                record = await self.store.issue_key(customer.id, digest, prefix, attrs.settings)
            except Conflict:  # registered concurrently
                again = await self.store.lookup_key(digest)
                if again is None:
                    raise
                return json_response(await self._same_hash(again, customer), 200)
        else:
            new = generate_key()
            record = await self.store.issue_key(customer.id, new.hash, new.prefix, attrs.settings)
            secret = new.secret
        if attrs.label is not None:
            await self.meta.set_label(record.id, attrs.label)
        return json_response(await self._key_view(record, secret), 201)

    async def _same_hash(self, existing: KeyRecord, customer: Customer) -> dict[str, Any]:
        if existing.customer_id != customer.id:
            raise conflict("a key with this keyHash is registered to another customer; generate a new key",
                           "key_hash_conflict")
        return await self._key_view(existing)

    async def get_key(self, request: web.Request) -> web.Response:
        return json_response(await self._key_view(await self._key(request)))

    async def patch_key(self, request: web.Request) -> web.Response:
        record = await self._key(request)
        body = await read_body(request)
        unknown = set(body) - set(schemas.KEY_FIELDS)
        if unknown:
            fields = ", ".join(schemas.KEY_FIELDS)
            raise schemas.AdminInputError(sorted(unknown)[0], f"cannot be changed; PATCH takes {fields}")
        attrs = schemas.key_attributes(body, record.settings)
        if attrs.settings != record.settings:
            record = await self.store.update_key(record.id, attrs.settings)
        if attrs.label_set:
            await self.meta.set_label(record.id, attrs.label)
        return json_response(await self._key_view(record))

    async def _status(self, request: web.Request, status: str) -> web.Response:
        record = await self._key(request)
        if record.status != status:
            try:
                record = await self.store.set_key_status(record.id, status)
            except Conflict as exc:
                raise conflict(f"{exc}", "key_revoked") from None
        return json_response(await self._key_view(record))

    async def suspend_key(self, request: web.Request) -> web.Response:
        return await self._status(request, "suspended")

    async def resume_key(self, request: web.Request) -> web.Response:
        return await self._status(request, "active")

    async def revoke_key(self, request: web.Request) -> web.Response:
        return await self._status(request, "revoked")

    async def rotate_key(self, request: web.Request) -> web.Response:
        old = await self._key(request)
        if old.status == "revoked":
            raise conflict(f"key key_{old.id} is revoked; issue a new key instead of rotating it", "key_revoked")
        body = await read_body(request)
        unknown = set(body) - {"keyHash", "keyPrefix"}
        if unknown:
            raise schemas.AdminInputError(sorted(unknown)[0], "rotate takes only keyHash and keyPrefix")
        given = schemas.key_hash(body)
        secret: str | None = None
        if given is not None:
            digest, prefix = given
        else:
            new = generate_key()
            digest, prefix, secret = new.hash, new.prefix, new.secret
        try:
            record = await self.store.issue_key(old.customer_id, digest, prefix, old.settings)
        except Conflict:
            raise conflict("a key with this keyHash already exists; generate a new key", "key_hash_conflict") from None
        label = await self.meta.label(old.id)
        if label is not None:
            await self.meta.set_label(record.id, label)
        await self.store.revoke_key(old.id)
        return json_response(views.key(record, label, secret), 201)

    # -- credit and usage ------------------------------------------------------------------------

    async def add_credits(self, request: web.Request) -> web.Response:
        customer = await self._customer(request)
        c = schemas.credit(await read_body(request))
        started = self.store.clock()
        try:
            if c.amount > 0:
                entry = await self.store.top_up(customer.id, c.amount, c.idempotency_key, c.reason or "top-up")
            else:
                entry = await self.store.adjust(customer.id, c.amount, c.idempotency_key, c.reason or "adjustment")
        except IdempotencyConflict as exc:
            raise conflict(
                f"idempotencyKey {c.idempotency_key!r} was already used for amount {exc.stored_amount}; "
                "use a new idempotency key for a different operation", "idempotency_conflict") from None
        # A replay returns the first entry, written before this call started.
        status = 201 if entry.created_at >= started else 200
        return json_response(views.ledger_entry(entry, customer.external_id), status)

    async def get_balance(self, request: web.Request) -> web.Response:
        customer = await self._customer(request)
        return json_response(views.balance(await self.store.balance(customer.id)))

    async def get_ledger(self, request: web.Request) -> web.Response:
        customer = await self._customer(request)
        limit = schemas.limit_param(request.query.get("limit"))
        cursor = request.query.get("cursor") or None
        try:
            page = await self.store.list_ledger(customer.id, cursor, limit)
        except ValueError as exc:
            raise schemas.AdminInputError("cursor", str(exc)) from None
        return json_response({"data": [views.ledger_entry(e, customer.external_id) for e in page.entries],
                              "nextCursor": page.next_cursor})

    async def get_usage(self, request: web.Request) -> web.Response:
        record = await self._key(request)
        today = self.store.clock().date()
        end = schemas.day_param(request.query.get("to"), "to", today)
        start = schemas.day_param(request.query.get("from"), "from", date(end.year, end.month, 1))
        if start > end:
            raise schemas.AdminInputError("from", "must not be after to")
        if end - start > timedelta(days=MAX_USAGE_DAYS):
            raise schemas.AdminInputError("from", f"the range may span at most {MAX_USAGE_DAYS} days")
        rows = await self.store.usage(start=start, end=end, key_id=record.id)
        return json_response({"data": [views.usage_row(r) for r in rows]})

    # -- audit -----------------------------------------------------------------------------------

    async def _audit_filter(self, request: web.Request) -> tuple[Any, Any, int | None]:
        since = schemas.time_param(request.query.get("since"), "since")
        until = schemas.time_param(request.query.get("until"), "until")
        customer_id: int | None = None
        ext = request.query.get("externalId")
        if ext:
            customer = await self.store.get_customer(ext)
            if customer is None:
                raise not_found(f"Customer {ext!r}", "externalId")
            customer_id = customer.id
        return since, until, customer_id

    async def _external_ids(self, ids: set[int], cache: dict[int, str | None]) -> None:
        for cid in ids - set(cache):
            found = await self.store.get_customer_by_id(cid)
            cache[cid] = found.external_id if found is not None else None

    async def query_audit(self, request: web.Request) -> web.Response:
        since, until, customer_id = await self._audit_filter(request)
        limit = schemas.limit_param(request.query.get("limit"), maximum=10_000)
        try:
            page = await self.store.query_audit(since=since, until=until, customer_id=customer_id,
                                                cursor=request.query.get("cursor") or None, limit=limit)
        except ValueError as exc:
            raise schemas.AdminInputError("cursor", str(exc)) from None
        names: dict[int, str | None] = {}
        await self._external_ids({e.customer_id for e in page.events if e.customer_id is not None}, names)
        return json_response({
            "data": [views.audit_event(e, names.get(e.customer_id) if e.customer_id else None) for e in page.events],
            "nextCursor": page.next_cursor,
        })

    async def export_audit(self, request: web.Request) -> web.StreamResponse:
        since, until, customer_id = await self._audit_filter(request)
        out = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await out.prepare(request)
        names: dict[int, str | None] = {}
        async for event in self.store.export_audit(since=since, until=until, customer_id=customer_id):
            if event.customer_id is not None:
                await self._external_ids({event.customer_id}, names)
            line = views.audit_event(event, names.get(event.customer_id) if event.customer_id else None)
            await out.write(jsonutil.dumps(line) + b"\n")
        await out.write_eof()
        return out

    async def openapi(self, request: web.Request) -> web.Response:
        return json_response(document(f"{request.scheme}://{request.host}", self.extensions))
