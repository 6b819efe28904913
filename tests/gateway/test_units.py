"""Small pure pieces: metrics exposition, key file, credentials, BYOK parsing and scrubbing, error shapes."""

from __future__ import annotations

import base64

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from newapi_gateway.byok import parse_byok, scrub
from newapi_gateway.credentials import InvalidCredentials, credentials_from_secret_data, parse_credentials_file
from newapi_gateway.errors import GatewayError
from newapi_gateway.keys import InvalidKeyFile, key_digest, parse_key_file
from newapi_gateway.metrics import Counter, GatewayMetrics, Histogram


def test_counter_and_histogram_exposition() -> None:
    c = Counter("x_total", "help", ("a", "b"))
    c.inc(("1", 'q"\\\n'))
    c.inc(("1", 'q"\\\n'), 2)
    assert c.render() == ['x_total{a="1",b="q\\"\\\\\\n"} 3']
    h = Histogram("d_seconds", "help", ("e",), buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 5.0):
        h.observe(("chat",), v)
    assert h.render() == [
        'd_seconds_bucket{e="chat",le="0.1"} 1',
        'd_seconds_bucket{e="chat",le="1"} 2',
        'd_seconds_bucket{e="chat",le="+Inf"} 3',
        'd_seconds_sum{e="chat"} 5.55',
        'd_seconds_count{e="chat"} 3',
    ]
    text = GatewayMetrics().render().decode()
    assert "# TYPE gateway_requests_total counter" in text
    assert "# TYPE gateway_request_duration_seconds histogram" in text


def test_key_file_json_and_yaml() -> None:
    r = parse_key_file(b'[{"key": "sk-a", "id": "a", "tier": "pro", "allowedModels": ["m"], "rpm": 5}]')
    info = r._by_digest[key_digest("sk-a")]
    assert (info.key_id, info.tier, info.allowed_models, info.rpm) == ("a", "pro", frozenset({"m"}), 5)
    y = parse_key_file(
        "keys:\n  - sha256: " + key_digest("sk-b") + "\n    customer: cb\n  - key: sk-c\n    suspended: true\n"
    )
    assert len(y) == 1
    assert y._by_digest[key_digest("sk-b")].customer_id == "cb"
    with pytest.raises(InvalidKeyFile, match=r"entry \[0\]: needs 'key'"):
        parse_key_file(b'[{"id": "x"}]')
    with pytest.raises(InvalidKeyFile, match="rpm"):
        parse_key_file(b'[{"key": "k", "rpm": 0}]')


def test_credentials_sources_and_repr() -> None:
    c = parse_credentials_file(b'{"a": "sk-secret"}')
    assert c["a"] == "sk-secret"
    assert "sk-secret" not in repr(c)
    assert "sk-secret" not in str(c)
    s = credentials_from_secret_data({"a": base64.b64encode(b"sk-2\n").decode()})
    assert s["a"] == "sk-2"
    with pytest.raises(InvalidCredentials, match="non-empty strings"):
        parse_credentials_file(b'{"a": 1}')
    with pytest.raises(InvalidCredentials, match="base64"):
        credentials_from_secret_data({"a": "%%%"})


def headers(**kw: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in kw.items()}))


def test_parse_byok() -> None:
    assert parse_byok(headers(Authorization="Bearer x"), "request-scoped") is None
    b = parse_byok(headers(X_Provider_Key=" sk-k ", X_Provider="OpenAI"), "request-scoped")
    assert b is not None
    assert b.key == "sk-k"
    assert b.provider == "openai"
    assert "sk-k" not in repr(b)
    with pytest.raises(GatewayError) as info:
        parse_byok(headers(X_Provider_Key="sk-k"), "never")
    assert info.value.status == 403
    assert info.value.code == "byok_disabled"
    assert "sk-k" not in info.value.message
    with pytest.raises(GatewayError):
        parse_byok(headers(X_Provider_Key="sk-k", X_Provider="other"), "request-scoped")


def test_scrub_removes_key_fragments_and_masked_forms() -> None:
    key = "sk-proj-ABCDEFGHIJKLMNOP1234"
    text = f"Incorrect API key provided: sk-*********************1234. Also {key} and {key[:8]}…"
    out = scrub(text, key)
    assert key not in out
    assert "1234" not in out
    assert key[:8] not in out
    assert out.startswith("Incorrect API key provided: [redacted].")


def test_error_shapes() -> None:
    e = GatewayError(404, "nope", code="model_not_found", param="model")
    assert e.openai_body() == {"error": {"message": "nope", "type": "invalid_request_error", "param": "model",
                                         "code": "model_not_found"}}
    assert e.anthropic_body() == {"type": "error", "error": {"type": "not_found_error", "message": "nope"}}
    assert GatewayError(503, "x").anthropic_body()["error"]["type"] == "overloaded_error"
