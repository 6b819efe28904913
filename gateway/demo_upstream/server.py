"""The demo upstream's HTTP server (aiohttp low-level server, no router, no access log).

One instance serves both wire formats; the endpoint is chosen by the path's **suffix**, so any
prefix works and one process can stand in for several channels (``/chan-a/v1``, ``/chan-b/v1``):

- ``POST …/chat/completions``, ``POST …/completions``, ``POST …/embeddings`` — OpenAI;
- ``POST …/messages``, ``POST …/messages/count_tokens`` — Anthropic;
- ``GET …/models`` — Anthropic's shape when the request has ``anthropic-version``, else OpenAI's;
- ``…/__demo/…`` — the control API (see the package docstring).

Fast path: a request with no behaviour (no rule, no header, no marker) whose exact body was seen
before is answered from a cache of pre-rendered bytes (only the id and ``created`` are filled in).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from multidict import CIMultiDictProxy

from . import anthropic_wire, behavior, content, openai_wire
from .behavior import Behavior, BehaviorError, RuleBook
from .content import Reply

#: Models listed by ``GET /v1/models`` when the server was given no ``--models`` (any is accepted).
DEFAULT_LISTED_MODELS: tuple[str, ...] = ("demo-chat", "demo-claude", "demo-embedding")

HEADER_BEHAVIOR = "x-demo-behavior"
HEADER_NAME = "x-demo-upstream"

_SEQ = "@@SEQ@@"
_SEQ_B = _SEQ.encode()
_CREATED = 1111111111
_CREATED_B = b'"created":1111111111'
_CACHE_MAX = 1024
_HANG_S = 3600.0

_NORMAL = Behavior()
_SSE = "text/event-stream; charset=utf-8"
_JSON = "application/json"


@dataclass(frozen=True)
class DemoUpstreamConfig:
    """How one demo upstream instance behaves."""

    #: Tells instances apart: in ids, ``system_fingerprint``, the ``x-demo-upstream`` header.
    name: str = "demo"
    #: Keys accepted (``Authorization: Bearer`` for OpenAI, ``x-api-key`` for Anthropic); empty = any.
    api_keys: tuple[str, ...] = ()
    #: Models served; others get 404 model_not_found. Empty = any model is accepted.
    models: tuple[str, ...] = ()
    #: Size of the in-memory request log (``GET /__demo/requests``); 0 records nothing.
    record: int = 1000
    #: A behaviour spec applied to every request (below rules, markers and headers).
    behavior: str = ""
    #: Largest request body accepted (bytes).
    max_body_bytes: int = 32 * 1024 * 1024


@dataclass
class _Prepared:
    """A rendered successful answer: JSON body, or SSE events, with the id/created placeholders."""

    stream: bool
    content_type: str
    body: bytes = b""
    events: list[bytes] = field(default_factory=list)


class _Fail(Exception):
    """Answer this error (status, body) in the endpoint's format."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _endpoint(path: str) -> str | None:
    if path.endswith("/chat/completions"):
        return "chat"
    if path.endswith("/completions"):
        return "completions"
    if path.endswith("/embeddings"):
        return "embeddings"
    if path.endswith("/messages/count_tokens"):
        return "count_tokens"
    if path.endswith("/messages"):
        return "messages"
    if path.endswith("/models"):
        return "models"
    return None


def _bearer(headers: Mapping[str, str]) -> str:
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _fill(template: bytes, seq: bytes, created: bytes) -> bytes:
    return template.replace(_SEQ_B, seq).replace(_CREATED_B, created)


def _decode_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


class DemoUpstream:
    """A demo LLM upstream speaking the OpenAI and Anthropic wire formats, deterministically."""

    def __init__(self, config: DemoUpstreamConfig | None = None) -> None:
        self.config = config or DemoUpstreamConfig()
        self._base_behavior = behavior.parse_spec(self.config.behavior)
        self.rules = RuleBook()
        self.requests: deque[dict[str, Any]] = deque(maxlen=max(self.config.record, 1))
        self.requests_total = 0
        self._keys = frozenset(self.config.api_keys)
        self._models = frozenset(self.config.models)
        self._listed = list(self.config.models or DEFAULT_LISTED_MODELS)
        self._fingerprint = f"fp_{self.config.name}"
        self._cache: dict[tuple[str, bytes], _Prepared] = {}
        self._seq = 0
        self._created_s = 0
        self._created_b = b""
        self._runner: web.ServerRunner | None = None
        self.host = ""
        self.port = 0

    # ----------------------------------------------------------------------------------------
    # lifecycle
    # ----------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0 = a free port); return the bound port."""
        server = web.Server(self._handle, request_factory=self._make_request, handler_cancellation=True)
        self._runner = web.ServerRunner(server, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=1024)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.host = host
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """Base URL (Anthropic base; append ``/v1`` for the OpenAI base)."""
        return f"http://{self.host}:{self.port}"

    def _make_request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: Any,
        task: asyncio.Task[None],
    ) -> BaseRequest:
        return BaseRequest(
            message,
            payload,
            protocol,
            writer,
            task,
            asyncio.get_running_loop(),
            client_max_size=self.config.max_body_bytes,
        )

    # ----------------------------------------------------------------------------------------
    # request handling
    # ----------------------------------------------------------------------------------------

    def _next(self) -> tuple[int, bytes, bytes]:
        self._seq += 1
        now = int(time.time())
        if now != self._created_s:
            self._created_s = now
            self._created_b = b'"created":%d' % now
        return self._seq, f"{self.config.name}-{self._seq}".encode(), self._created_b

    async def _handle(self, request: BaseRequest) -> web.StreamResponse:
        path = request.path
        if "/__demo/" in path:
            return await self._control(request, path[path.index("/__demo/") + 8 :])
        endpoint = _endpoint(path)
        method = request.method
        expected = "GET" if endpoint == "models" else "POST"
        if endpoint is None or method != expected:
            status = 404 if endpoint is None else 405
            what = "Invalid URL" if endpoint is None else "Invalid method for URL"
            return self._json(status, openai_wire.error(f"{what} ({method} {path})", "invalid_request_error"), b"0")
        raw = await request.read() if request.can_read_body else b""
        seq, rid, created = self._next()
        self.requests_total += 1
        headers = request.headers
        record: dict[str, Any] | None = None
        if self.config.record:
            record = {
                "seq": seq,
                "time": time.time(),
                "method": method,
                "path": request.path_qs,
                "endpoint": endpoint,
                "headers": headers,
                "body": raw,
                "status": None,
            }
            self.requests.append(record)
        anthropic = endpoint in ("messages", "count_tokens") or (
            endpoint == "models" and "anthropic-version" in headers
        )
        how: Behavior | None = None
        try:
            self._check_auth(anthropic, headers, rid)
            if not self.rules and not self._base_behavior and HEADER_BEHAVIOR not in headers and endpoint != "models":
                prepared = self._cache.get((endpoint, raw))
                if prepared is not None:
                    if record is not None:
                        record["status"] = 200
                    return await self._send(request, prepared, _NORMAL, rid, created, anthropic)
            body = self._parse(raw, anthropic, rid)
            model = body.get("model") if isinstance(body.get("model"), str) else None
            stream = body.get("stream") is True
            layers = [self._base_behavior, self.rules.take(endpoint, model, stream)]
            try:
                _, marker_specs = content.strip_markers(self._user_text(endpoint, body))
                layers.extend(behavior.parse_spec(s) for s in marker_specs)
                header_spec = headers.get(HEADER_BEHAVIOR)
                if header_spec is not None:
                    layers.append(behavior.parse_spec(header_spec))
            except BehaviorError as exc:
                raise self._invalid(anthropic, rid, f"demo upstream: {exc}") from None
            how = behavior.build(*layers)
            if record is not None and not how.is_default:
                record["behavior"] = {k: v for k, v in vars(how).items() if v != getattr(_NORMAL, k)}
            if how.drop:
                self._drop(request, record)
                raise asyncio.CancelledError
            if how.hang:
                if record is not None:
                    record["status"] = 0
                await asyncio.sleep(_HANG_S)
                raise asyncio.CancelledError
            if how.delay_ms:
                await asyncio.sleep(how.delay_ms / 1000)
            if how.status is not None:
                raise _Fail(how.status, self._status_error(anthropic, how, model, headers, rid))
            prepared = self._prepare(endpoint, body, model, how, anthropic)
            if how.is_default and len(layers) == 2 and not marker_specs:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()
                self._cache[(endpoint, raw)] = prepared
        except _Fail as fail:
            if record is not None:
                record["status"] = fail.status
            return self._error(fail, anthropic, rid, how)
        if record is not None:
            record["status"] = 200
        return await self._send(request, prepared, how, rid, created, anthropic)

    # ----------------------------------------------------------------------------------------

    def _check_auth(self, anthropic: bool, headers: CIMultiDictProxy[str], rid: bytes) -> None:
        request_id = "req_" + rid.decode()
        if anthropic:
            if self._keys:
                # The API takes the key as x-api-key; recent SDKs send it as Authorization: Bearer.
                key = headers.get("x-api-key") or _bearer(headers)
                if not key:
                    raise _Fail(401, anthropic_wire.error(401, "x-api-key header is required", request_id))
                if key not in self._keys:
                    raise _Fail(401, anthropic_wire.error(401, "invalid x-api-key", request_id))
            version = headers.get("anthropic-version")
            if not version:
                raise _Fail(400, anthropic_wire.error(400, "anthropic-version: header is required", request_id))
            if not anthropic_wire.valid_version(version):
                raise _Fail(
                    400, anthropic_wire.error(400, f"anthropic-version: '{version}' is not a valid version", request_id)
                )
        elif self._keys:
            key = _bearer(headers)
            if not key:
                raise _Fail(401, openai_wire.missing_key_error())
            if key not in self._keys:
                raise _Fail(401, openai_wire.invalid_key_error(key))

    def _invalid(self, anthropic: bool, rid: bytes, message: str, param: str | None = None) -> _Fail:
        if anthropic:
            return _Fail(400, anthropic_wire.error(400, message, "req_" + rid.decode()))
        return _Fail(400, openai_wire.error(message, "invalid_request_error", None, param))

    def _parse(self, raw: bytes, anthropic: bool, rid: bytes) -> dict[str, Any]:
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            if anthropic:
                raise self._invalid(True, rid, "There was an issue with your request body: invalid JSON") from None
            raise _Fail(400, openai_wire.invalid_json_error()) from None
        if not isinstance(body, dict):
            raise self._invalid(anthropic, rid, "The request body must be a JSON object.")
        return body

    @staticmethod
    def _user_text(endpoint: str, body: Mapping[str, Any]) -> str:
        if endpoint == "chat":
            return content.last_user_text(body, ("user", "tool"))
        if endpoint in ("messages", "count_tokens"):
            return content.last_user_text(body, ("user",))
        if endpoint == "completions":
            prompt = body.get("prompt")
            if isinstance(prompt, str):
                return prompt
            if isinstance(prompt, list):
                return " ".join(p for p in prompt if isinstance(p, str))
        return ""

    def _status_error(
        self, anthropic: bool, how: Behavior, model: str | None, headers: Mapping[str, str], rid: bytes
    ) -> dict[str, Any]:
        assert how.status is not None
        if anthropic:
            return anthropic_wire.status_error(how.status, model, "req_" + rid.decode(), how.message)
        retry_after = how.retry_after if how.retry_after is not None else 1.0
        return openai_wire.status_error(how.status, model, _bearer(headers), how.message, retry_after)

    # ----------------------------------------------------------------------------------------
    # building answers
    # ----------------------------------------------------------------------------------------

    def _check_model(self, body: Mapping[str, Any], anthropic: bool, rid: bytes) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            if anthropic:
                raise self._invalid(True, rid, "model: Field required")
            raise _Fail(400, openai_wire.error("you must provide a model parameter", "invalid_request_error"))
        if self._models and model not in self._models:
            if anthropic:
                raise _Fail(404, anthropic_wire.status_error(404, model, "req_" + rid.decode()))
            raise _Fail(404, openai_wire.model_not_found_error(model))
        return model

    def _prepare(
        self, endpoint: str, body: dict[str, Any], model: str | None, how: Behavior, anthropic: bool
    ) -> _Prepared:
        """Render the successful answer (with id/created placeholders)."""
        rid = _SEQ.encode()
        if endpoint == "models":
            if anthropic:
                return _Prepared(False, _JSON, anthropic_wire.dumps(anthropic_wire.models(self._listed)))
            return _Prepared(False, _JSON, openai_wire.dumps(openai_wire.models(self._listed, _CREATED)))
        name = self._check_model(body, anthropic, rid)
        if endpoint == "chat":
            return self._prepare_chat(body, name, how)
        if endpoint == "completions":
            return self._prepare_completions(body, name, how)
        if endpoint == "embeddings":
            return self._prepare_embeddings(body, name, how)
        if endpoint == "count_tokens":
            self._require_messages(body, True)
            tokens = content.input_tokens(content.anthropic_prompt_texts(body))
            return _Prepared(False, _JSON, anthropic_wire.dumps(anthropic_wire.count_tokens(tokens)))
        return self._prepare_messages(body, name, how)

    def _require_messages(self, body: Mapping[str, Any], anthropic: bool) -> None:
        messages = body.get("messages")
        rid = _SEQ.encode()
        if anthropic:
            if not isinstance(messages, list):
                raise self._invalid(True, rid, "messages: Field required")
            return
        if messages is None:
            raise _Fail(400, openai_wire.missing_param_error("messages"))
        if not isinstance(messages, list) or not messages:
            raise _Fail(
                400,
                openai_wire.error(
                    "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty "
                    "array instead.",
                    "invalid_request_error",
                    "empty_array",
                    "messages",
                ),
            )

    def _tool(self, tools: Any, wanted: str | None, forced: str | None, anthropic: bool) -> content.ToolCall | None:
        """The tool call to make, if any: ``forced`` by tool_choice, else ``wanted`` by behaviour."""
        offered: dict[str, Any] = {}
        if isinstance(tools, list):
            for tool in tools:
                if not isinstance(tool, Mapping):
                    continue
                if anthropic:
                    if isinstance(tool.get("name"), str):
                        offered.setdefault(tool["name"], tool.get("input_schema"))
                else:
                    fn = tool.get("function")
                    if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
                        offered.setdefault(fn["name"], fn.get("parameters"))
        if not offered:
            return None
        name = forced or wanted
        if name is None:
            return None
        if name == "*":
            name = next(iter(offered))
        if name not in offered:
            raise self._invalid(
                anthropic, _SEQ.encode(), f"demo upstream: tool {name!r} is not among the request's tools"
            )
        return content.tool_call_for(name, offered[name])

    def _prepare_chat(self, body: dict[str, Any], model: str, how: Behavior) -> _Prepared:
        self._require_messages(body, False)
        choice = body.get("tool_choice")
        forced: str | None = None
        if choice == "required":
            forced = how.tool or "*"
        elif isinstance(choice, Mapping):
            fn = choice.get("function")
            if isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
                forced = fn["name"]
        tool = None if choice == "none" else self._tool(body.get("tools"), how.tool, forced, False)
        prompt = content.input_tokens(content.openai_prompt_texts(body))
        if tool is not None:
            reply = Reply(words=(), stop="tool", input_tokens=prompt, tool=tool)
        else:
            words = content.reply_words(content.last_user_text(body, ("user", "tool")), how.tokens)
            limit = body.get("max_completion_tokens", body.get("max_tokens"))
            words, cut = content.truncate(words, limit)
            reply = Reply(words=tuple(words), stop="length" if cut else "stop", input_tokens=prompt)
        rid = _SEQ
        if body.get("stream") is True:
            options = body.get("stream_options")
            include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
            chunks = openai_wire.chat_chunks(
                reply,
                rid=rid,
                created=_CREATED,
                model=model,
                fingerprint=self._fingerprint,
                include_usage=include_usage,
                usage_mode=how.usage,
            )
            return _Prepared(True, _SSE, events=[*map(openai_wire.sse, chunks), openai_wire.DONE])
        completion = openai_wire.chat_completion(
            reply, rid=rid, created=_CREATED, model=model, fingerprint=self._fingerprint, usage_mode=how.usage
        )
        return _Prepared(False, _JSON, openai_wire.dumps(completion))

    def _prepare_completions(self, body: dict[str, Any], model: str, how: Behavior) -> _Prepared:
        prompt = body.get("prompt")
        if prompt is None:
            raise _Fail(400, openai_wire.missing_param_error("prompt"))
        if isinstance(prompt, list) and prompt and all(isinstance(p, str | list) for p in prompt):
            prompts: list[Any] = prompt
        else:
            prompts = [prompt]
        replies: list[Reply] = []
        for p in prompts:
            words = content.reply_words(p if isinstance(p, str) else "", how.tokens)
            words, cut = content.truncate(words, body.get("max_tokens"))
            replies.append(
                Reply(words=tuple(words), stop="length" if cut else "stop", input_tokens=content.prompt_input_tokens(p))
            )
        if body.get("stream") is True:
            options = body.get("stream_options")
            include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
            chunks = openai_wire.completion_chunks(
                replies,
                rid=_SEQ,
                created=_CREATED,
                model=model,
                fingerprint=self._fingerprint,
                include_usage=include_usage,
                usage_mode=how.usage,
            )
            return _Prepared(True, _SSE, events=[*map(openai_wire.sse, chunks), openai_wire.DONE])
        out = openai_wire.completion(
            replies, rid=_SEQ, created=_CREATED, model=model, fingerprint=self._fingerprint, usage_mode=how.usage
        )
        return _Prepared(False, _JSON, openai_wire.dumps(out))

    def _prepare_embeddings(self, body: dict[str, Any], model: str, how: Behavior) -> _Prepared:
        data = body.get("input")
        if data is None:
            raise _Fail(400, openai_wire.missing_param_error("input"))
        if isinstance(data, str) or (isinstance(data, list) and data and all(isinstance(x, int) for x in data)):
            items: list[Any] = [data]
        elif isinstance(data, list) and data:
            items = data
        else:
            raise _Fail(400, openai_wire.invalid_param_error("input", "'input' must be a non-empty string or array."))
        dims = body.get("dimensions")
        if dims is None:
            dims = content.DEFAULT_EMBEDDING_DIMENSIONS
        if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= 4096:
            raise _Fail(400, openai_wire.invalid_param_error("dimensions", "'dimensions' must be an integer 1-4096."))
        b64 = body.get("encoding_format") == "base64"
        vectors: list[list[float] | str] = []
        for item in items:
            vec = content.embedding_vector(item, dims)
            vectors.append(content.embedding_base64(vec) if b64 else vec)
        tokens = sum(content.prompt_input_tokens(item) for item in items)
        out = openai_wire.embeddings(vectors, model=model, tokens=tokens, usage_mode=how.usage)
        return _Prepared(False, _JSON, openai_wire.dumps(out))

    def _prepare_messages(self, body: dict[str, Any], model: str, how: Behavior) -> _Prepared:
        rid_b = _SEQ.encode()
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise self._invalid(True, rid_b, "max_tokens: Field required")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise self._invalid(True, rid_b, "max_tokens: Input should be a valid integer greater than or equal to 1")
        self._require_messages(body, True)
        choice = body.get("tool_choice")
        forced: str | None = None
        kind = choice.get("type") if isinstance(choice, Mapping) else None
        if kind == "any":
            forced = how.tool or "*"
        elif kind == "tool" and isinstance(choice, Mapping) and isinstance(choice.get("name"), str):
            forced = choice["name"]
        tool = None if kind == "none" else self._tool(body.get("tools"), how.tool, forced, True)
        words = content.reply_words(content.last_user_text(body, ("user",)), how.tokens)
        words, cut = content.truncate(words, max_tokens)
        prompt = content.input_tokens(content.anthropic_prompt_texts(body))
        stop: content.StopKind = "tool" if tool is not None else ("length" if cut else "stop")
        reply = Reply(words=tuple(words), stop=stop, input_tokens=prompt, tool=tool)
        if body.get("stream") is True:
            events = anthropic_wire.message_events(reply, rid=_SEQ, model=model, usage_mode=how.usage)
            return _Prepared(True, _SSE, events=[anthropic_wire.sse(name, data) for name, data in events])
        out = anthropic_wire.message(reply, rid=_SEQ, model=model, usage_mode=how.usage)
        return _Prepared(False, _JSON, anthropic_wire.dumps(out))

    # ----------------------------------------------------------------------------------------
    # sending
    # ----------------------------------------------------------------------------------------

    def _headers(self, anthropic: bool, rid: bytes, content_type: str) -> dict[str, str]:
        request_id = "req_" + rid.decode()
        return {
            "Content-Type": content_type,
            ("request-id" if anthropic else "x-request-id"): request_id,
            HEADER_NAME: self.config.name,
        }

    def _json(self, status: int, body: Any, rid: bytes, anthropic: bool = False) -> web.Response:
        return web.Response(status=status, body=openai_wire.dumps(body), headers=self._headers(anthropic, rid, _JSON))

    def _error(self, fail: _Fail, anthropic: bool, rid: bytes, how: Behavior | None) -> web.Response:
        body = openai_wire.dumps(fail.body).replace(_SEQ_B, rid)
        headers = self._headers(anthropic, rid, _JSON)
        retry_after = how.retry_after if how is not None else None
        if retry_after is None and fail.status in (429, 529) and how is not None and how.status is not None:
            retry_after = 1.0
        if retry_after is not None:
            headers["retry-after"] = str(int(retry_after)) if retry_after == int(retry_after) else str(retry_after)
        if anthropic and fail.status in (429, 529):
            headers["x-should-retry"] = "true"
        reason = "Overloaded" if fail.status == 529 else None
        return web.Response(status=fail.status, reason=reason, body=body, headers=headers)

    def _drop(self, request: BaseRequest, record: dict[str, Any] | None) -> None:
        if record is not None:
            record["status"] = 0
        transport = request.transport
        if transport is not None:
            transport.close()

    async def _send(
        self,
        request: BaseRequest,
        prepared: _Prepared,
        how: Behavior,
        rid: bytes,
        created: bytes,
        anthropic: bool,
    ) -> web.StreamResponse:
        headers = self._headers(anthropic, rid, prepared.content_type)
        if not prepared.stream:
            return web.Response(body=_fill(prepared.body, rid, created), headers=headers)
        headers["Cache-Control"] = "no-cache"
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        delay = how.chunk_delay_ms / 1000
        for i, event in enumerate(prepared.events):
            if i == how.disconnect_after:
                self._drop(request, None)
                raise asyncio.CancelledError
            if i == how.stall_after:
                await asyncio.sleep(_HANG_S)
                raise asyncio.CancelledError
            if i == how.error_after:
                if anthropic:
                    await response.write(anthropic_wire.sse("error", anthropic_wire.stream_error(how.message)))
                else:
                    await response.write(openai_wire.sse(openai_wire.stream_error(how.message)))
                break
            if i and delay:
                await asyncio.sleep(delay)
            await response.write(_fill(event, rid, created))
        await response.write_eof()
        return response

    # ----------------------------------------------------------------------------------------
    # control API
    # ----------------------------------------------------------------------------------------

    def request_log(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The recorded requests (oldest first), JSON-ready: headers lower-cased, body decoded."""
        items = list(self.requests) if self.config.record else []
        if limit is not None:
            items = items[-limit:] if limit > 0 else []
        out = []
        for rec in items:
            entry = dict(rec)
            entry["headers"] = {k.lower(): v for k, v in rec["headers"].items()}
            entry["body"] = _decode_body(rec["body"])
            out.append(entry)
        return out

    def reset(self) -> None:
        """Forget rules, the request log and the response cache."""
        self.rules.clear()
        self.requests.clear()
        self._cache.clear()

    def info(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "models": list(self.config.models),
            "accepts_any_model": not self.config.models,
            "api_keys": len(self.config.api_keys),
            "requests_total": self.requests_total,
            "record": self.config.record,
            "behavior": self._base_behavior,
            "rules": [r.to_json() for r in self.rules.rules],
        }

    async def _control(self, request: BaseRequest, action: str) -> web.StreamResponse:
        method = request.method
        try:
            if action in ("health", "info") and method == "GET":
                return self._control_json(
                    200, self.info() if action == "info" else {"ok": True, "name": self.config.name}
                )
            if action == "requests":
                if method == "GET":
                    limit = request.query.get("limit")
                    return self._control_json(200, {"requests": self.request_log(int(limit) if limit else None)})
                if method == "DELETE":
                    count = len(self.requests)
                    self.requests.clear()
                    return self._control_json(200, {"cleared": count})
            if action == "behavior":
                if method == "GET":
                    return self._control_json(200, {"rules": [r.to_json() for r in self.rules.rules]})
                if method == "POST":
                    raw = await request.read()
                    text = raw.decode("utf-8", "replace").strip()
                    data: Any = json.loads(text) if text.startswith(("{", "[")) else text
                    rules = data if isinstance(data, list) else [data]
                    added = [self.rules.add(behavior.parse_rule(r)).to_json() for r in rules]
                    return self._control_json(201, {"rules": added})
                if method == "DELETE":
                    self.rules.clear()
                    return self._control_json(200, {"rules": []})
            if action == "reset" and method == "POST":
                self.reset()
                return self._control_json(200, {"ok": True})
        except (BehaviorError, ValueError) as exc:
            return self._control_json(400, {"error": str(exc)})
        return self._control_json(404, {"error": f"no control action {method} /__demo/{action}"})

    def _control_json(self, status: int, body: Any) -> web.Response:
        return web.Response(
            status=status,
            body=json.dumps(body, default=str).encode(),
            headers={"Content-Type": _JSON, HEADER_NAME: self.config.name},
        )


async def serve(config: DemoUpstreamConfig, host: str, port: int, ready: asyncio.Future[int] | None = None) -> None:
    """Run a demo upstream until cancelled."""
    upstream = DemoUpstream(config)
    bound = await upstream.start(host, port)
    if ready is not None and not ready.done():
        ready.set_result(bound)
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await upstream.stop()
