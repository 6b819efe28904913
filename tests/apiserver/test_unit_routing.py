"""Request path parsing and query flags (pure)."""

from __future__ import annotations

import pytest

from newapi_operator.apiserver.errors import ApiError
from newapi_operator.apiserver.routing import Route, flag, parse_path


@pytest.mark.parametrize(("path", "route"), [
    ("/api/v1/namespaces", Route("", "v1", "namespaces")),
    ("/api/v1/namespaces/ns1", Route("", "v1", "namespaces", None, "ns1")),
    ("/api/v1/namespaces/ns1/status", Route("", "v1", "namespaces", None, "ns1", "status")),
    ("/api/v1/namespaces/ns1/configmaps", Route("", "v1", "configmaps", "ns1")),
    ("/api/v1/namespaces/ns1/configmaps/c", Route("", "v1", "configmaps", "ns1", "c")),
    ("/api/v1/configmaps", Route("", "v1", "configmaps")),
    ("/apis/g.io/v1/namespaces/ns/things/t/status", Route("g.io", "v1", "things", "ns", "t", "status")),
    ("/apis/g.io/v1/clusterthings/t", Route("g.io", "v1", "clusterthings", None, "t")),
    ("/apis/g.io/v1", None),
    ("/api/v1", None),
    ("/version", None),
    ("/apis/g.io/v1/namespaces/ns/things/t/status/extra", None),
])
def test_parse_path(path: str, route: Route | None) -> None:
    assert parse_path(path) == route


@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("1", True), ("True", True), ("TRUE", True), ("t", True),
    ("false", False), ("0", False), ("False", False), ("", False),
])
def test_flag_parses_like_go(value: str, expected: bool) -> None:
    assert flag({"watch": value}, "watch") is expected
    assert flag({}, "watch") is None


def test_invalid_flag_is_400() -> None:
    with pytest.raises(ApiError) as raised:
        flag({"watch": "yes"}, "watch")
    assert raised.value.code == 400
