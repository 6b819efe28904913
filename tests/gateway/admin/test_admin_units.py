"""Pure parts of the admin API: body validation (the error's param names the field) and the token."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from newapi_gateway.admin.auth import AdminToken, AdminTokenError, token_from
from newapi_gateway.admin.schemas import AdminInputError, credit, key_attributes, key_hash, signup
from newapi_gateway.store import KeySettings


def test_key_attributes_create_and_patch() -> None:
    created = key_attributes({"tier": "pro", "rateLimit": {"rpm": 5}, "spendingCap": {"monthly": 10},
                              "allowedModels": ["a", "a", "b"], "expiresAt": "2030-01-01T00:00:00+02:00"})
    assert created.settings == KeySettings(tier="pro", rpm=5, cap_monthly=10, allowed_models=("a", "b"),
                                           expires_at=datetime(2029, 12, 31, 22, tzinfo=UTC))
    assert not created.label_set
    patched = key_attributes({"spendingCap": {"daily": 3}, "label": "x"}, created.settings)
    assert (patched.settings.rpm, patched.settings.cap_daily, patched.settings.cap_monthly) == (5, 3, None)
    assert (patched.label, patched.label_set) == ("x", True)
    naive = key_attributes({"tier": "t", "expiresAt": "2030-01-01T00:00:00"})
    assert naive.settings.expires_at == datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("body", "param"), [
    ({}, "tier"),
    ({"tier": ""}, "tier"),
    ({"tier": "t", "rateLimit": {"rpm": 1.5}}, "rateLimit.rpm"),
    ({"tier": "t", "rateLimit": {"rps": 1}}, "rateLimit"),
    ({"tier": "t", "spendingCap": {"daily": -1}}, "spendingCap.daily"),
    ({"tier": "t", "spendingCap": 5}, "spendingCap"),
    ({"tier": "t", "allowedModels": "m"}, "allowedModels"),
    ({"tier": "t", "label": "x" * 201}, "label"),
])
def test_key_attribute_errors_name_the_field(body: dict[str, object], param: str) -> None:
    with pytest.raises(AdminInputError) as info:
        key_attributes(body)
    assert info.value.param == param
    assert info.value.status == 400


def test_key_hash_and_credit_and_signup() -> None:
    digest = "ab" * 32
    assert key_hash({"keyHash": digest.upper(), "keyPrefix": "sk-abc"}) == (bytes.fromhex(digest), "sk-abc")
    assert key_hash({}) is None
    with pytest.raises(AdminInputError, match="keyPrefix"):
        key_hash({"keyPrefix": "sk-abc"})
    assert credit({"amount": -5, "idempotencyKey": "i"}).amount == -5
    with pytest.raises(AdminInputError, match="amount"):
        credit({"amount": 2**62, "idempotencyKey": "i"})
    s = signup({"externalId": "u", "tier": "free", "idempotencyKey": "i"})
    assert (s.credit_grant, s.attributes.settings.tier) == (0, "free")
    with pytest.raises(AdminInputError, match="creditGrant"):
        signup({"externalId": "u", "tier": "free", "idempotencyKey": "i", "creditGrant": -1})


def test_admin_token(tmp_path: Path) -> None:
    token = AdminToken(value="s" * 20)
    assert token.check("Bearer " + "s" * 20)
    assert token.check("bearer " + "s" * 20)
    assert not token.check("Bearer " + "s" * 19)
    assert not token.check(None)
    with pytest.raises(AdminTokenError, match="at least 16"):
        AdminToken(value="short")
    with pytest.raises(AdminTokenError, match="--admin-token-file"):
        token_from(None, env={})
    path = tmp_path / "token"
    with pytest.raises(AdminTokenError, match="cannot read"):
        token_from(str(path), env={})
    path.write_text("f" * 20 + "\n")
    from_file = token_from(str(path), env={"NEWAPI_ADMIN_TOKEN": "e" * 20})
    assert from_file.check("Bearer " + "f" * 20)
    path.write_text("short")  # a broken rotation keeps the current token
    assert from_file.check("Bearer " + "f" * 20)
    assert token_from(None, env={"NEWAPI_ADMIN_TOKEN": "e" * 20}).check("Bearer " + "e" * 20)
