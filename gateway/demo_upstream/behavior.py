"""Behaviour of the demo upstream for one request: failures, delays, stream shape, usage.

Pure: parsing, validation, merging and the server's rule book (no I/O, no clock).

A behaviour comes from three places, merged field by field (later wins):

1. the first matching **rule** of the server (control API ``POST /__demo/behavior`` or
   ``--behavior``), which can be limited to the next K requests (``times``) and filtered by
   ``endpoint``, ``model``, ``stream``;
2. a ``[[demo:SPEC]]`` **marker** in the last user message (survives a gateway's translation);
3. the ``x-demo-behavior`` request **header**.

``SPEC`` is ``key=value`` pairs separated by ``;`` (a bare key means ``true``), or a JSON object::

    status=503; retry_after=2          delay_ms=200; chunk_delay_ms=50; tokens=40
    disconnect_after=3                 hang
    tool=get_weather                   usage=zero
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

UsageMode = Literal["normal", "zero", "omit"]
ENDPOINTS: tuple[str, ...] = ("chat", "completions", "embeddings", "models", "messages", "count_tokens")


class BehaviorError(ValueError):
    """A behaviour spec or rule is invalid; the message names the field and what is accepted."""


@dataclass(frozen=True)
class Behavior:
    """What the demo upstream does differently for one request (defaults: answer normally)."""

    #: Answer with this HTTP status and an error body in the endpoint's format.
    status: int | None = None
    #: Error message to put in the error body instead of the default for the status.
    message: str | None = None
    #: ``retry-after`` header (seconds) on errors; 429 and 529 always carry one (default 1).
    retry_after: float | None = None
    #: Wait this long before sending anything (time to first byte).
    delay_ms: int = 0
    #: Streams: wait this long between two events.
    chunk_delay_ms: int = 0
    #: Reply with this many lorem words instead of the echo (= content chunks of a stream).
    tokens: int | None = None
    #: Streams: close the connection after this many events (no terminator).
    disconnect_after: int | None = None
    #: Streams: stop sending after this many events and keep the connection open.
    stall_after: int | None = None
    #: Streams: after this many events send an in-stream error event and end the stream.
    error_after: int | None = None
    #: Never answer (the connection stays open until the client gives up).
    hang: bool = False
    #: Close the connection without sending a response.
    drop: bool = False
    #: ``zero``: report all-zero usage; ``omit``: report no usage at all.
    usage: UsageMode = "normal"
    #: Call this tool (``*``: the first one offered) when the request offers tools.
    tool: str | None = None

    @property
    def is_default(self) -> bool:
        return self == _DEFAULT


_DEFAULT = Behavior()
_FIELDS = {f.name: f for f in fields(Behavior)}
_INT_FIELDS = {"status", "delay_ms", "chunk_delay_ms", "tokens", "disconnect_after", "stall_after", "error_after"}
_BOOL_FIELDS = {"hang", "drop"}


def _coerce(name: str, value: Any) -> Any:
    """Validate/convert one behaviour field; raise :class:`BehaviorError` naming it."""
    if name in _INT_FIELDS:
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise BehaviorError(f"behavior field {name!r}: expected an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BehaviorError(f"behavior field {name!r}: expected a non-negative integer, got {value!r}")
        if name == "status" and not 400 <= value <= 599:
            raise BehaviorError(f"behavior field 'status': expected an HTTP error status 400-599, got {value}")
        return value
    if name in _BOOL_FIELDS:
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise BehaviorError(f"behavior field {name!r}: expected true or false, got {value!r}")
    if name == "retry_after":
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise BehaviorError(f"behavior field 'retry_after': expected seconds, got {value!r}") from None
        if seconds < 0:
            raise BehaviorError(f"behavior field 'retry_after': expected seconds >= 0, got {value!r}")
        return seconds
    if name == "usage":
        if value not in ("normal", "zero", "omit"):
            raise BehaviorError(f"behavior field 'usage': expected normal, zero or omit, got {value!r}")
        return value
    if name == "tool":
        if value is True:
            return "*"
        if not isinstance(value, str) or not value:
            raise BehaviorError(f"behavior field 'tool': expected a tool name or '*', got {value!r}")
        return value
    if name == "message":
        return str(value)
    raise BehaviorError(f"unknown behavior field {name!r}; known: {', '.join(sorted(_FIELDS))}")


def validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validated copy of a behaviour field mapping (unknown fields rejected)."""
    return {name: _coerce(name, value) for name, value in values.items()}


def spec_items(spec: str) -> dict[str, Any]:
    """Split a ``key=value; flag`` spec or a JSON object into raw (unvalidated) items."""
    spec = spec.strip()
    if not spec:
        return {}
    if spec.startswith("{"):
        try:
            loaded = json.loads(spec)
        except ValueError as exc:
            raise BehaviorError(f"behavior spec is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise BehaviorError("behavior spec JSON must be an object")
        return loaded
    values: dict[str, Any] = {}
    for item in spec.split(";"):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        values[key.strip()] = value.strip() if sep else True
    return values


def parse_spec(spec: str) -> dict[str, Any]:
    """Parse a ``key=value; flag`` spec or a JSON object into validated behaviour fields."""
    return validate(spec_items(spec))


def build(*layers: Mapping[str, Any]) -> Behavior:
    """The behaviour from validated field layers, later layers overriding earlier ones."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return Behavior(**merged) if merged else _DEFAULT


# --------------------------------------------------------------------------------------------
# Server rules
# --------------------------------------------------------------------------------------------

_RULE_KEYS = {"times", "endpoint", "model", "stream"}


@dataclass
class Rule:
    """A server-side behaviour, optionally for the next ``times`` matching requests only."""

    behavior: dict[str, Any]
    times: int | None = None
    endpoint: str | None = None
    model: str | None = None
    stream: bool | None = None
    id: int = 0
    hits: int = field(default=0)

    def matches(self, endpoint: str, model: str | None, stream: bool) -> bool:
        return (
            (self.endpoint is None or self.endpoint == endpoint)
            and (self.model is None or self.model == model)
            and (self.stream is None or self.stream == stream)
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, **self.behavior, "hits": self.hits}
        for key in ("times", "endpoint", "model", "stream"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def parse_rule(data: Any) -> Rule:
    """A rule from the control API's JSON: behaviour fields plus ``times``/``endpoint``/``model``/``stream``."""
    if isinstance(data, str):
        data = spec_items(data)
        for key in ("times", "stream"):
            if isinstance(data.get(key), str):
                data[key] = _coerce_rule_value(key, data[key])
    if not isinstance(data, Mapping):
        raise BehaviorError("a behavior rule must be a JSON object (or a 'key=value; ...' string)")
    behavior = validate({k: v for k, v in data.items() if k not in _RULE_KEYS})
    times = data.get("times")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise BehaviorError(f"rule field 'times': expected a positive integer (or omit it for always), got {times!r}")
    endpoint = data.get("endpoint")
    if endpoint is not None and endpoint not in ENDPOINTS:
        raise BehaviorError(f"rule field 'endpoint': expected one of {', '.join(ENDPOINTS)}, got {endpoint!r}")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise BehaviorError(f"rule field 'model': expected a model name, got {model!r}")
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise BehaviorError(f"rule field 'stream': expected true or false, got {stream!r}")
    return Rule(behavior=behavior, times=times, endpoint=endpoint, model=model, stream=stream)


def _coerce_rule_value(key: str, value: str) -> Any:
    if key == "times":
        try:
            return int(value)
        except ValueError:
            raise BehaviorError(f"rule field 'times': expected a positive integer, got {value!r}") from None
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BehaviorError(f"rule field {key!r}: expected true or false, got {value!r}")


class RuleBook:
    """The server's rules, first match wins; a rule with ``times`` is removed when used up."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self._next_id = 1

    def __bool__(self) -> bool:
        return bool(self.rules)

    def add(self, rule: Rule) -> Rule:
        rule.id = self._next_id
        self._next_id += 1
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def take(self, endpoint: str, model: str | None, stream: bool) -> dict[str, Any]:
        """The behaviour fields of the first matching rule (consuming one use), or ``{}``."""
        for i, rule in enumerate(self.rules):
            if rule.matches(endpoint, model, stream):
                rule.hits += 1
                if rule.times is not None and rule.hits >= rule.times:
                    del self.rules[i]
                return rule.behavior
        return {}
