"""Reseller disclosure: what is published, what never is, HTML and JSON, and when the page exists."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import pytest

from newapi_gateway.compliance.disclosure import (
    HTML_TYPE,
    JSON_TYPE,
    NOT_FOUND,
    compile_disclosure,
    disclosed_providers,
    provider_display_name,
    wants_json,
)

from .builders import channel, make_table

SECRETS = ("acct-4242-openai", "contract-7f3a", "https://docs.internal/contracts/9", "oa-main-key", "10.20.30.40")


def full_table(**policy: Any) -> Any:
    contract = {"kind": "commercial-contract", "contractRef": "https://docs.internal/contracts/9"}
    return make_table([
        channel("oa-main", "openai-compatible", ["gpt-4o", "gpt-4o-mini"], credential="oa-main-key"),
        channel("oa-backup", "openai-compatible", ["gpt-4o"], endpoint="https://api.openai.com/v1/"),
        channel("claude", "anthropic", ["claude-sonnet-4"], attestation={**contract, "provider": "Anthropic"}),
        channel("gemini", "openai-compatible", ["gemini-2.5-pro"],
                endpoint="https://generativelanguage.googleapis.com/v1beta/openai"),
        channel("mistral", "openai-compatible", ["mistral-large"], endpoint="http://10.20.30.40:8080/v1",
                aupProvider="openai", attestation={**contract, "provider": "Mistral AI"}),
        channel("pending", "openai-compatible", ["grok-4"], endpoint="https://api.x.ai/v1",
                attestation={**contract, "attested": False}),
        channel("local", "vllm", ["qwen3-32b", "llama-4"]),
        channel("byok", "byok-passthrough", ["byok-gpt"], allowedProviders=["openai", "google"]),
    ], {"reseller": {"operatorName": "ACME Sovereign Cloud", **policy.pop("reseller", {})}, **policy})


def test_providers_are_grouped_named_and_sorted() -> None:
    providers = disclosed_providers(full_table().channels)
    assert [(p.name, p.models, p.api_types) for p in providers] == [
        ("Anthropic", ("claude-sonnet-4",), ("Anthropic Messages API",)),
        ("Google", ("gemini-2.5-pro",), ("OpenAI-compatible API",)),
        ("Mistral AI", ("mistral-large",), ("OpenAI-compatible API",)),
        ("OpenAI", ("gpt-4o", "gpt-4o-mini"), ("OpenAI-compatible API",)),
    ]


@pytest.mark.parametrize(("overrides", "name"), [
    ({"endpoint": "https://myres.openai.azure.com/openai"}, "Microsoft Azure OpenAI"),
    ({"endpoint": "https://bedrock-runtime.eu-west-1.amazonaws.com"}, "Amazon Bedrock"),
    ({"endpoint": "https://europe-west4-aiplatform.googleapis.com/v1"}, "Google Cloud Vertex AI"),
    ({"endpoint": "https://llm.example.net/v1"}, "llm.example.net"),
    ({"endpoint": "https://llm.example.net/v1", "aupProvider": "google"}, "Google"),
    ({"endpoint": "https://API.OPENAI.COM/v1"}, "OpenAI"),
    ({"attestation": {"kind": "commercial-contract", "provider": "  "}}, "OpenAI"),
    ({"attestation": {"kind": "commercial-contract", "provider": " Acme AI "}}, "Acme AI"),
    ({"endpoint": "https://evil-api.openai.com.example.org/v1"}, "evil-api.openai.com.example.org"),
])
def test_display_name_derivation(overrides: dict[str, Any], name: str) -> None:
    table = make_table([channel("c", "openai-compatible", **overrides)])
    assert provider_display_name(table.channels[0]) == name


def test_json_document() -> None:
    status, ctype, body = compile_disclosure(full_table()).render("application/json")
    assert (status, ctype) == (200, JSON_TYPE)
    doc = json.loads(body)
    assert doc["object"] == "llm_provider_disclosure"
    assert doc["operator"] == "ACME Sovereign Cloud"
    assert [p["name"] for p in doc["providers"]] == ["Anthropic", "Google", "Mistral AI", "OpenAI"]
    assert doc["providers"][3] == {"name": "OpenAI", "models": ["gpt-4o", "gpt-4o-mini"],
                                   "apiTypes": ["OpenAI-compatible API"]}
    assert doc["bringYourOwnKey"] == ["Google", "OpenAI"]
    assert doc["selfHostedModels"] == ["llama-4", "qwen3-32b"]
    assert doc["revision"] == full_table().version
    assert set(doc) == {"object", "operator", "providers", "bringYourOwnKey", "selfHostedModels", "revision"}


def test_unattested_channels_are_not_listed_as_resold() -> None:
    names = [p.name for p in disclosed_providers(full_table().channels)]
    assert "xAI" not in names


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in ("meta", "br", "link", "!doctype"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1:] == [tag], (self.stack, tag)
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_page() -> None:
    status, ctype, body = compile_disclosure(full_table()).render(None)
    assert (status, ctype) == (200, HTML_TYPE)
    page = _Page()
    page.feed(body.decode())
    assert page.stack == []  # balanced
    assert "script" not in page.tags
    assert "img" not in page.tags
    assert "link" not in page.tags
    text = " ".join(page.text)
    for expected in ("ACME Sovereign Cloud resells access", "Anthropic", "Google", "Mistral AI", "OpenAI",
                     "gpt-4o-mini", "Self-hosted models", "qwen3-32b", "Bring your own key", "Google, OpenAI"):
        assert expected in text, expected
    assert page.tags.count("tr") == 5  # header + 4 providers


@pytest.mark.parametrize("accept", [None, "application/json"])
def test_nothing_confidential_is_published(accept: str | None) -> None:
    _, _, body = compile_disclosure(full_table()).render(accept)
    text = body.decode()
    for secret in SECRETS:
        assert secret not in text
    for name in ("oa-main", "oa-backup", "pending", "byok\"", "vllm.vllm.svc"):
        assert name not in text


def test_values_are_escaped() -> None:
    table = make_table(
        [channel("x", "openai-compatible", ["<script>alert(1)</script>"],
                 attestation={"kind": "commercial-contract", "provider": "Evil & <Co>"})],
        {"reseller": {"operatorName": "O'Brien \"<b>\" Ltd"}},
    )
    _, _, body = compile_disclosure(table).render("text/html")
    html = body.decode()
    assert "<script>" not in html
    assert "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Evil &amp; &lt;Co&gt;" in html
    assert "O&#x27;Brien &quot;&lt;b&gt;&quot; Ltd" in html
    _, _, raw = compile_disclosure(table).render("application/json")
    assert json.loads(raw)["providers"][0]["name"] == "Evil & <Co>"


def test_in_cluster_only_instance_still_publishes() -> None:
    disclosure = compile_disclosure(make_table([channel("local", "vllm", ["qwen3-32b"])]))
    status, _, body = disclosure.render(None)
    assert status == 200
    assert "does not resell any third-party model provider" in body.decode()
    assert "The operator of this service" in body.decode()  # no operatorName
    assert json.loads(disclosure.render("application/json")[2])["providers"] == []


def test_404_when_not_required_or_nothing_is_bound() -> None:
    assert compile_disclosure(full_table(reseller={"disclosureRequired": False})) is NOT_FOUND
    assert compile_disclosure(make_table([])) is NOT_FOUND
    status, ctype, body = NOT_FOUND.render("application/json")
    assert (status, ctype) == (404, JSON_TYPE)
    assert json.loads(body)["error"]["code"] == "not_found"
    status, ctype, _ = NOT_FOUND.render("text/html")
    assert (status, ctype) == (404, HTML_TYPE)


@pytest.mark.parametrize(("accept", "expected"), [
    (None, False),
    ("", False),
    ("*/*", False),
    ("text/html", False),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),  # a browser
    ("application/json", True),
    ("Application/JSON", True),
    ("application/json; charset=utf-8", True),
    ("application/json, */*", True),
    ("application/json, text/plain, */*", True),  # axios' default
    ("text/html, application/json;q=0.9", False),
    ("application/json;q=0.9, text/html;q=0.5", True),
    ("application/json;q=0", False),
    ("application/json;q=abc", False),
])
def test_wants_json(accept: str | None, expected: bool) -> None:
    assert wants_json(accept) is expected
