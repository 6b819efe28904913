"""The inference request pipeline: authenticate, parse, admit, route, forward with failover, answer.

One :class:`Proxy` serves every inference endpoint. The hot path is kept lean on purpose: the body
is parsed once (orjson when installed), routing is dict lookups on the request's snapshot, headers
are built once per attempt, non-stream pass-through bodies are forwarded as bytes, stream chunks
are written as the translator returns them, and nothing is logged at INFO per request.

Failover happens only before the first byte went to the client: on a transport error (connect,
timeout), on an upstream 408/429/5xx, on an upstream 401/403 for a channel using the operator's
credential (the channel is misconfigured, not the client), and on a stream that fails before the
translator produced any client bytes. BYOK requests never fail over.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer

from . import jsonutil
from .byok import KEY_HEADER, ByokRequest, parse_byok, provider_missing, scrub
from .errors import GatewayError, bad_request, forbidden, invalid_key, missing_key, too_large, upstream_unavailable
from .hooks import ChannelFilter, Hooks, RequestContext, SafeHeaders
from .keys import KeyResolver
from .routing import RoutePlan, RoutingError, plan
from .snapshot import CompiledChannel, Snapshot
from .state import GatewayState
from .translate import get_translator
from .translate.base import (
    Operation,
    TranslationError,
    Translator,
    UnsupportedOperation,
    UpstreamResponseError,
    Usage,
    join_url,
)
from .translate.errors import is_failover_status
from .upstream import TRANSPORT_ERRORS, UpstreamClient, UpstreamResponse, transport_reason

log = logging.getLogger("newapi_gateway.proxy")

JSON_HEADERS = {"Content-Type": "application/json"}
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: Fields an endpoint's body must carry (cheap shape checks; the upstream validates the rest).
REQUIRED: dict[str, tuple[tuple[str, type], ...]] = {
    "chat": (("messages", list),),
    "completions": (),
    "embeddings": (),
    "messages": (("messages", list), ("max_tokens", int)),
}
_CLIENT_GONE = (ConnectionResetError, aiohttp.ClientConnectionResetError, BrokenPipeError)
_BYOK_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:+/=~")


class _Attempt(Exception):
    """One upstream attempt failed in a way that allows the next candidate (internal control flow)."""

    def __init__(
        self, reason: str, status: int | None = None, body: bytes = b"", client_body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.body = body
        self.client_body = client_body  # already in the client's format (from a stream translator)


def extract_key(request: web.Request, allow_x_api_key: bool) -> str | None:
    """The caller's gateway key from ``Authorization: Bearer`` (or ``x-api-key`` where allowed)."""
    headers = request.headers
    auth = headers.get("Authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    if allow_x_api_key:
        key = headers.get("x-api-key")
        if key:
            return key.strip()
    return None


class Proxy:
    """Serves the inference endpoints for one :class:`GatewayState`."""

    def __init__(
        self,
        state: GatewayState,
        keys: KeyResolver,
        upstream: UpstreamClient,
        hooks: Hooks | None = None,
        rng: random.Random | None = None,
        tracer: Tracer | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.state = state
        self.metrics = state.metrics
        self.keys = keys
        self.upstream = upstream
        self.hooks = hooks or Hooks()
        self.rng = rng or random.Random()
        self.tracer = tracer
        self.clock = clock
        self._translators: dict[tuple[str, str], Translator] = {}
        self._id_prefix = "req_" + os.urandom(6).hex()
        self._counter = 0
        self._active: tuple[Snapshot, Hooks, Hooks] | None = None

    def hooks_for(self, snap: Snapshot) -> Hooks:
        """The hooks that apply on ``snap`` (:meth:`Hooks.active`, worked out once per snapshot)."""
        active = self._active
        if active is None or active[0] is not snap or active[1] is not self.hooks:
            active = self._active = (snap, self.hooks, self.hooks.active(snap))
        return active[2]

    def translator(self, client_format: str, upstream_format: str) -> Translator:
        key = (client_format, upstream_format)
        t = self._translators.get(key)
        if t is None:
            t = self._translators[key] = get_translator(client_format, upstream_format)  # type: ignore[arg-type]
        return t

    def next_request_id(self) -> str:
        self._counter += 1
        return f"{self._id_prefix}{self._counter:x}"

    # -- entry -----------------------------------------------------------------------------------

    async def handle(self, request: web.Request, client_format: str, operation: Operation) -> web.StreamResponse:
        started = self.clock()
        snap = self.state.snapshot
        request_id = self.next_request_id()
        if snap is None:
            err = upstream_unavailable("The gateway has no routing table loaded yet; retry shortly.", 503, "not_ready")
            return self._error_response(err, client_format, request_id)
        hooks = self.hooks_for(snap)
        span: Span | None = None
        if self.tracer is not None:
            span = self.tracer.start_span("gateway.request", kind=SpanKind.SERVER)
            span.set_attribute("gateway.endpoint", operation)
            span.set_attribute("gateway.request_id", request_id)
        ctx: RequestContext | None = None
        response: web.StreamResponse
        tier = model_label = channel_label = ""
        try:
            api_key = extract_key(request, allow_x_api_key=client_format == "anthropic")
            if api_key is None:
                raise missing_key()
            key = await self.keys.resolve(api_key)
            if key is None:
                raise invalid_key()
            tier = key.tier
            ctx = RequestContext(request_id, operation, client_format, key, snap, started)
            ctx.byok = KEY_HEADER in request.headers  # before any check: a refused BYOK request is BYOK too
            body = await self._read_json(request, snap.table.policy.gateway.max_request_bytes)
            model = self._check_body(body, operation)
            ctx.model = model
            if model in snap.known_models:
                model_label = model
            ctx.body = body
            ctx.stream = operation != "embeddings" and body.get("stream") is True
            byok = parse_byok(request.headers, snap.table.policy.byok.scope)
            if byok is not None:
                self._check_byok_key(byok)
                ctx.byok_provider = byok.provider
            if hooks.admission or hooks.channel_filters or hooks.finish or hooks.meter is not None:
                ctx.peer = request.remote
                ctx.headers = SafeHeaders(request.headers)
            for check in hooks.admission:
                await check(ctx)
            try:
                route = plan(snap, model, key, self.rng, byok=byok is not None,
                             byok_provider=byok.provider if byok else None)
            except RoutingError as exc:
                if exc.kind == "tier_unknown":
                    raise forbidden(exc.message, code="tier_not_configured") from None
                raise GatewayError(404, exc.message, code="model_not_found", param="model") from None
            ctx.plan = route
            self.metrics.model_routes.inc((model_label or "_other", route.served if model_label else "_other"))
            if span is not None:
                span.set_attribute("gateway.model", model_label or "_other")
                span.set_attribute("gateway.served_model", route.served)
            response = await self._forward(request, ctx, route, body, byok, span, hooks)
        except GatewayError as err:
            response = self._error_response(err, client_format, request_id)
        except Exception:
            log.exception("unexpected error while serving a request", extra={"request_id": request_id})
            internal = GatewayError(500, "The gateway failed to process the request.", type="server_error",
                                    code="internal_error")
            response = self._error_response(internal, client_format, request_id)
        status = response.status
        if ctx is not None:
            ctx.status = status
            if ctx.channel is not None:
                channel_label = ctx.channel.name
        elapsed = self.clock() - started
        self.metrics.requests.inc((tier, model_label, channel_label, str(status)))
        self.metrics.duration.observe((operation,), elapsed)
        if span is not None:
            span.set_attribute("http.status_code", status)
            span.set_attribute("gateway.channel", channel_label)
            span.end()
        if ctx is not None and hooks.finish:
            for observer in hooks.finish:
                try:
                    await observer(ctx)
                except Exception:
                    log.exception("finish observer failed", extra={"request_id": request_id})
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "request",
                extra={"request_id": request_id, "endpoint": operation, "model": model_label, "tier": tier,
                       "channel": channel_label, "status": status, "attempts": ctx.attempts if ctx else 0,
                       "outcome": ctx.outcome if ctx else "", "duration_ms": round(elapsed * 1000, 3)},
            )
        return response

    # -- request checks --------------------------------------------------------------------------

    async def _read_json(self, request: web.Request, limit: int) -> dict[str, Any]:
        length = request.content_length
        if length is not None:
            if length > limit:
                raise too_large(limit)
            raw = await request.read()
        else:
            chunks: list[bytes] = []
            size = 0
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
            raw = b"".join(chunks)
        if not raw:
            raise bad_request("The request body is empty; send a JSON object.")
        try:
            body = jsonutil.loads(raw)
        except jsonutil.DecodeError:
            raise bad_request(
                "We could not parse the JSON body of your request. The body must be a valid JSON object.",
                code="invalid_json",
            ) from None
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.", code="invalid_json")
        return body

    @staticmethod
    def _check_body(body: dict[str, Any], operation: str) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise bad_request("you must provide a model parameter", param="model")
        for name, kind in REQUIRED[operation]:
            value = body.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                what = "an array" if kind is list else "an integer"
                raise bad_request(f"'{name}' is a required property and must be {what}", param=name)
        return model

    @staticmethod
    def _check_byok_key(byok: ByokRequest) -> None:
        if len(byok.key) > 512 or not set(byok.key) <= _BYOK_KEY_CHARS:
            raise bad_request("The X-Provider-Key header holds characters an API key cannot contain.",
                              param="X-Provider-Key")

    # -- forwarding ------------------------------------------------------------------------------

    async def _forward(
        self,
        request: web.Request,
        ctx: RequestContext,
        route: RoutePlan,
        body: dict[str, Any],
        byok: ByokRequest | None,
        span: Span | None,
        hooks: Hooks,
    ) -> web.StreamResponse:
        snap = ctx.snapshot
        settings = snap.table.policy.gateway
        max_attempts = 1 if byok is not None else settings.max_attempts
        threshold, cooldown = settings.breaker.failure_threshold, settings.breaker.cooldown_ms / 1000
        filters = hooks.channel_filters
        meter = hooks.meter
        filtered: GatewayError | None = None
        last: tuple[_Attempt, Translator, CompiledChannel] | None = None
        circuit_open = 0
        for ch in route.candidates:
            if ctx.attempts >= max_attempts:
                break
            if filters:
                rejection = self._filter(filters, ctx, ch)
                if rejection is not None:
                    filtered = filtered or rejection
                    continue
            breaker = None
            if byok is None:
                breaker = self.state.breakers.get(ch.name, threshold, cooldown)
                if not breaker.allow():
                    circuit_open += 1
                    continue
            ctx.attempts += 1
            ctx.channel = ch
            if byok is None:
                fmt, base, auth = ch.format, ch.base_url, ch.auth_headers
            else:
                provider = byok.provider
                if provider is None:
                    if len(ch.route.allowed_providers) != 1:
                        raise provider_missing()
                    provider = ch.route.allowed_providers[0]
                fmt, base = ch.route.effective_format(provider), ch.route.provider_endpoint(provider)
                auth = byok.auth_headers(fmt)
            tr = self.translator(ctx.client_format, fmt)
            hold: object = None
            try:
                try:
                    ureq = tr.request(ctx.operation, body, ch.upstream_model(route.served))  # type: ignore[arg-type]
                except (UnsupportedOperation, TranslationError) as exc:
                    raise bad_request(str(exc), param=getattr(exc, "param", None)) from None
                except (KeyError, TypeError, ValueError, AttributeError):
                    raise bad_request("The request body has a field of an unexpected shape.") from None
                if meter is not None:
                    hold = await meter.authorize(ctx, ch)
            except BaseException:
                if breaker is not None:
                    breaker.release()
                raise
            headers = dict(ureq.headers) if ureq.headers else {}
            headers["Content-Type"] = "application/json"
            headers.update(auth)
            attempt_span: Span | None = None
            if span is not None and self.tracer is not None:
                attempt_span = self.tracer.start_span(
                    "gateway.upstream", context=trace.set_span_in_context(span), kind=SpanKind.CLIENT
                )
                attempt_span.set_attribute("gateway.channel", ch.name)
                attempt_span.set_attribute("gateway.attempt", ctx.attempts)
                attempt_span.set_attribute("gateway.upstream_model", ch.upstream_model(route.served))
            usage: Usage | None = None
            outcome = "error"
            try:
                response, usage, outcome = await self._attempt(
                    request, ctx, ch, tr, join_url(base, ureq.path), jsonutil.dumps(ureq.body), headers,
                    ureq.stream, byok,
                )
            except _Attempt as failed:
                outcome = failed.reason
                if breaker is not None:
                    breaker.failure()
                last = (failed, tr, ch)
                if byok is None:
                    self.metrics.failovers.inc((ch.name, failed.reason))
                continue
            except BaseException:
                if breaker is not None:
                    breaker.release()
                raise
            else:
                if breaker is not None:
                    if outcome == "upstream_abort":  # the stream broke after it started: a channel failure
                        breaker.failure()
                    else:
                        breaker.success()
                ctx.usage = usage
                ctx.outcome = outcome
                return response
            finally:
                if attempt_span is not None:
                    attempt_span.set_attribute("gateway.outcome", outcome)
                    attempt_span.end()
                if meter is not None:
                    await meter.settle(ctx, hold, usage, outcome)
        return self._exhausted(ctx, route, last, filtered, circuit_open, byok, cooldown)

    @staticmethod
    def _filter(filters: list[ChannelFilter], ctx: RequestContext, ch: CompiledChannel) -> GatewayError | None:
        for f in filters:
            rejection = f(ctx, ch)
            if rejection is not None:
                return rejection
        return None

    def _exhausted(
        self,
        ctx: RequestContext,
        route: RoutePlan,
        last: tuple[_Attempt, Translator, CompiledChannel] | None,
        filtered: GatewayError | None,
        circuit_open: int,
        byok: ByokRequest | None,
        cooldown: float,
    ) -> web.StreamResponse:
        ctx.outcome = "exhausted"
        if last is None:
            if filtered is not None:
                raise filtered
            raise GatewayError(
                503,
                f"No channel for model `{route.requested}` is available right now (circuit breakers open); "
                "retry shortly.",
                type="server_error",
                code="channel_unavailable",
                headers={"Retry-After": str(max(1, int(cooldown)))},
            )
        failed, tr, _ch = last
        if failed.status is None:
            if failed.reason == "timeout":
                raise upstream_unavailable("The upstream did not answer in time.", 504, "upstream_timeout")
            raise upstream_unavailable("Could not reach the upstream provider.", 502, "upstream_unreachable")
        if failed.reason == "credential":
            raise upstream_unavailable(
                "The upstream rejected the gateway's channel credential; the operator has been notified.",
                502, "upstream_auth_failed",
            )
        if failed.client_body is not None:
            status, err_body = failed.status, failed.client_body
        else:
            status, err_body = self._translate_error(tr, failed.status, failed.body, byok)
        return web.Response(body=jsonutil.dumps(err_body), status=status, headers=self._headers(JSON_HEADERS, ctx))

    @staticmethod
    def _translate_error(
        tr: Translator, status: int, raw: bytes, byok: ByokRequest | None
    ) -> tuple[int, dict[str, Any]]:
        text = raw.decode(errors="replace")
        if byok is not None:
            text = scrub(text, byok.key)
        parsed: Any = None
        try:
            parsed = jsonutil.loads(text) if text else None
        except jsonutil.DecodeError:
            parsed = None
        return tr.error(status, parsed if isinstance(parsed, dict) else None, text)

    @staticmethod
    def _headers(base: dict[str, str], ctx: RequestContext) -> dict[str, str]:
        headers = dict(base)
        headers["x-request-id"] = ctx.request_id
        if ctx.response_headers:
            headers.update(ctx.response_headers)
        return headers

    async def _attempt(
        self,
        request: web.Request,
        ctx: RequestContext,
        ch: CompiledChannel,
        tr: Translator,
        url: str,
        payload: bytes,
        headers: dict[str, str],
        stream: bool,
        byok: ByokRequest | None,
    ) -> tuple[web.StreamResponse, Usage | None, str]:
        """One upstream attempt. Raises :class:`_Attempt` when the next candidate may be tried."""
        t0 = self.clock()
        try:
            resp = await self.upstream.post(url, payload, headers, ch.connect_timeout, ch.read_timeout)
        except TRANSPORT_ERRORS as exc:
            reason = transport_reason(exc)
            self.metrics.upstream_duration.observe((ch.name, reason), self.clock() - t0)
            raise _Attempt(reason) from None
        status = resp.status
        try:
            if status >= 400:
                try:
                    raw = await resp.read()
                except TRANSPORT_ERRORS as exc:
                    raise _Attempt(transport_reason(exc)) from None
                self.metrics.upstream_duration.observe((ch.name, str(status)), self.clock() - t0)
                if byok is None and is_failover_status(status):
                    raise _Attempt(str(status), status, raw)
                if byok is None and status in (401, 403):
                    log.error("upstream rejected the channel credential",
                              extra={"channel": ch.name, "status": status, "request_id": ctx.request_id})
                    raise _Attempt("credential", status, raw)
                out_status, err_body = self._translate_error(tr, status, raw, byok)
                return (web.Response(body=jsonutil.dumps(err_body), status=out_status,
                                     headers=self._headers(JSON_HEADERS, ctx)), None, f"upstream_{status}")
            if stream:
                return await self._stream(request, ctx, ch, tr, resp, t0, byok)
            try:
                raw = await resp.read()
            except TRANSPORT_ERRORS as exc:
                raise _Attempt(transport_reason(exc)) from None
            self.metrics.upstream_duration.observe((ch.name, "ok"), self.clock() - t0)
            try:
                out = tr.response_bytes(ctx.operation, status, raw)  # type: ignore[arg-type]
            except UpstreamResponseError:
                raise _Attempt("bad_response", 502, raw) from None
            ctx.response_body = out.body
            return (web.Response(body=out.body, status=out.status, headers=self._headers(JSON_HEADERS, ctx)),
                    out.usage, "ok")
        finally:
            resp.release()

    async def _stream(
        self,
        request: web.Request,
        ctx: RequestContext,
        ch: CompiledChannel,
        tr: Translator,
        resp: UpstreamResponse,
        t0: float,
        byok: ByokRequest | None,
    ) -> tuple[web.StreamResponse, Usage | None, str]:
        st = tr.stream(ctx.operation, ctx.body)  # type: ignore[arg-type]
        # Until the translator yields client bytes nothing is committed: failover is still possible.
        pending = b""
        ended = False
        while not pending:
            try:
                chunk = await resp.readany()
            except TRANSPORT_ERRORS as exc:
                raise _Attempt(transport_reason(exc)) from None
            if not chunk:
                pending = st.finish()
                ended = True
                break
            pending = st.feed(chunk)
            if st.upstream_error is not None:
                break
        self.metrics.upstream_duration.observe((ch.name, "ok"), self.clock() - t0)
        if st.upstream_error is not None:
            status, err_body = st.upstream_error
            if byok is None and is_failover_status(status):
                raise _Attempt(f"stream_{status}", status, client_body=err_body)
            return (web.Response(body=jsonutil.dumps(err_body), status=status,
                                 headers=self._headers(JSON_HEADERS, ctx)), st.usage, f"upstream_{status}")
        if not pending:
            raise _Attempt("empty_stream")
        out = web.StreamResponse(status=200, headers=self._headers(SSE_HEADERS, ctx))
        outcome = "ok"
        try:
            await out.prepare(request)
            await out.write(pending)
            ctx.delivered_events += pending.count(b"data:")
            capture = ctx.capture
            if capture is not None:
                capture.append(pending)
            while not ended:
                try:
                    chunk = await resp.readany()
                except TRANSPORT_ERRORS:
                    chunk = b""
                    outcome = "upstream_abort"
                if not chunk:
                    tail = st.finish()
                    if tail:
                        await out.write(tail)
                        ctx.delivered_events += tail.count(b"data:")
                        if capture is not None:
                            capture.append(tail)
                    break
                data = st.feed(chunk)
                if data:
                    await out.write(data)
                    ctx.delivered_events += data.count(b"data:")
                    if capture is not None:
                        capture.append(data)
            if outcome == "ok" and st.upstream_error is not None:
                outcome = "upstream_error"
            await out.write_eof()
        except _CLIENT_GONE:
            outcome = "client_abort"
        if outcome != "ok":
            self.metrics.stream_aborts.inc(("client" if outcome == "client_abort" else "upstream",))
            resp.close()
        return out, st.usage, outcome

    def _error_response(self, err: GatewayError, client_format: str, request_id: str) -> web.Response:
        headers = {"Content-Type": "application/json", "x-request-id": request_id}
        if err.headers:
            headers.update(err.headers)
        return web.Response(body=err.body_bytes(client_format), status=err.status, headers=headers)

