"""The admin API's guard: bearer token (401 without, with a wrong one, with another scheme), the
token file re-read when rotated, and the separation of the two listeners (admin routes are never
served on the customer port, customer routes never on the admin port)."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.gateway.metering.metered import ADMIN_BASE, ADMIN_TOKEN, MeteredGateway, poll


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789abcdef", f"Basic {ADMIN_TOKEN}",
                                           f"Bearer {ADMIN_TOKEN[:-1]}", f"Bearer {ADMIN_TOKEN}x", "Bearer"])
def test_401_without_the_right_token(gateway: MeteredGateway, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    for method, path in (("GET", "/customers/anyone"), ("POST", "/users"), ("GET", "/openapi.json"),
                         ("GET", "/no/such/route")):
        rsp = httpx.request(method, gateway.admin_url + ADMIN_BASE + path, headers=headers, timeout=10)
        assert rsp.status_code == 401, (method, path)
        assert rsp.headers["WWW-Authenticate"].startswith("Bearer")
        assert rsp.json()["error"]["code"] == "invalid_admin_token"


def test_admin_api_is_not_served_on_the_customer_port(gateway: MeteredGateway) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for method, path in (("GET", "/openapi.json"), ("PUT", "/customers/x"), ("POST", "/users")):
        rsp = httpx.request(method, gateway.url + ADMIN_BASE + path, headers=auth, json={}, timeout=10)
        assert rsp.status_code == 404
        assert rsp.json()["error"]["code"] == "unknown_url"
    # and the customer API is not on the admin port
    for method, path in (("POST", "/v1/chat/completions"), ("GET", "/quota"), ("GET", "/readyz")):
        rsp = httpx.request(method, gateway.admin_url + path, headers=auth, timeout=10)
        assert rsp.status_code == 404


def test_unknown_admin_routes_and_methods(gateway: MeteredGateway) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    missing = httpx.get(gateway.admin_url + ADMIN_BASE + "/no/such/route", headers=auth, timeout=10)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "unknown_url")
    wrong = httpx.delete(gateway.admin_url + ADMIN_BASE + "/users", headers=auth, timeout=10)
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "method_not_allowed")


def test_rotated_token_file_takes_effect_without_restart(gateway: MeteredGateway) -> None:
    token_file = gateway.tmp / "admin-token"
    url = gateway.admin_url + ADMIN_BASE + "/openapi.json"
    new = "rotated-admin-token-fedcba9876543210"
    try:
        tmp = token_file.with_suffix(".new")
        tmp.write_text(new + "\n")
        os.replace(tmp, token_file)  # how a mounted Secret changes: a new file swapped in
        poll(lambda: httpx.get(url, headers={"Authorization": f"Bearer {new}"}, timeout=10).status_code == 200,
             what="new token accepted")
        assert httpx.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10).status_code == 401
    finally:
        tmp = token_file.with_suffix(".new")
        tmp.write_text(ADMIN_TOKEN + "\n")
        os.replace(tmp, token_file)
    poll(lambda: httpx.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10).status_code == 200,
         what="original token accepted again")
