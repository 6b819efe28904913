"""The shared upstream-error policy: statuses, failover classification, message extraction."""

from __future__ import annotations

from typing import Any

import pytest

from newapi_gateway.translate.errors import (
    client_status,
    is_failover_status,
    to_anthropic_error,
    to_openai_error,
    upstream_message,
)


@pytest.mark.parametrize(
    ("upstream", "openai", "anthropic"),
    [
        (400, 400, 400),
        (401, 401, 401),
        (403, 403, 403),
        (404, 404, 404),
        (408, 504, 504),
        (409, 409, 409),
        (413, 413, 413),
        (422, 422, 422),
        (429, 429, 429),
        (500, 502, 502),
        (502, 502, 502),
        (503, 503, 529),
        (504, 504, 504),
        (529, 503, 529),
        (301, 502, 502),
        (599, 502, 502),
    ],
)
def test_client_status(upstream: int, openai: int, anthropic: int) -> None:
    assert client_status(upstream, "openai") == openai
    assert client_status(upstream, "anthropic") == anthropic


@pytest.mark.parametrize(
    ("status", "failover"),
    [
        (400, False),
        (401, False),
        (404, False),
        (408, True),
        (413, False),
        (429, True),
        (500, True),
        (503, True),
        (529, True),
    ],
)
def test_failover_statuses(status: int, failover: bool) -> None:
    assert is_failover_status(status) is failover


@pytest.mark.parametrize(
    ("body", "text", "message"),
    [
        ({"error": {"message": "m1", "type": "t"}}, "", "m1"),
        ({"type": "error", "error": {"type": "api_error", "message": "m2"}}, "", "m2"),
        ({"object": "error", "message": "m3", "type": "BadRequestError", "code": 400}, "", "m3"),
        ({"error": "m4"}, "", "m4"),
        (
            {"detail": [{"loc": ["body", "model"], "msg": "field required"}]},
            "",
            "[{'loc': ['body', 'model'], 'msg': 'field required'}]",
        ),
        (None, "  upstream\n request   timeout ", "upstream request timeout"),
        (None, "<!DOCTYPE html><title>502</title>", "the upstream answered HTTP 418 without an error message"),
        (None, "", "the upstream answered HTTP 418 without an error message"),
    ],
)
def test_upstream_message(body: dict[str, Any] | None, text: str, message: str) -> None:
    assert upstream_message(418, body, text) == message


def test_long_messages_are_clipped() -> None:
    assert len(upstream_message(500, None, "x" * 5000)) == 500


def test_shapes_are_not_confused() -> None:
    anthropic_body = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
    status, body = to_openai_error(400, anthropic_body)
    assert body == {"error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": None}}
    openai_body = {"error": {"message": "bad", "type": "invalid_request_error", "param": "model", "code": None}}
    status, body = to_anthropic_error(404, openai_body)
    assert (status, body) == (404, {"type": "error", "error": {"type": "not_found_error", "message": "bad"}})
