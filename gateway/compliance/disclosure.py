"""Reseller disclosure: the public ``GET /legal/llm-providers`` page, built once per routing table.

What is published (and what is not):

* **Resold providers**: every channel of type ``openai-compatible`` or ``anthropic`` whose
  attestation is ``commercial-contract`` and attested, grouped by provider display name, with the
  client-facing model names it serves and its API type. The display name is the attestation's
  ``provider`` when set, else derived from the endpoint host (``api.openai.com`` -> OpenAI, ...),
  else from ``aupProvider``, else the host name itself.
* **Bring your own key**: the providers BYOK channels accept (not resold: customers use their own
  contract with the provider).
* **Self-hosted models**: model names served by in-cluster (vllm) channels (not resold).
* The operator's name (``reseller.operatorName``) and the routing-table revision.
* **Never**: provider account ids, contract references (internal documents), endpoints, credential
  names, channel names.

Status: 200 only when ``reseller.disclosureRequired`` is true and the table has at least one
channel; otherwise 404 (nothing to disclose, or disclosure not required). HTML for people,
JSON when the client asks for ``application/json`` (:func:`wants_json`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from newapi_operator.api.v1alpha1 import COMMERCIAL_CHANNEL_TYPES

from ..routing_table import ChannelRoute, RoutingTable

PATH = "/legal/llm-providers"
HTML_TYPE = "text/html; charset=utf-8"
JSON_TYPE = "application/json"

#: Display names of well-known API hosts (exact host, or a suffix starting with a dot).
KNOWN_HOSTS: tuple[tuple[str, str], ...] = (
    ("api.openai.com", "OpenAI"),
    ("api.anthropic.com", "Anthropic"),
    ("generativelanguage.googleapis.com", "Google"),
    ("aiplatform.googleapis.com", "Google Cloud Vertex AI"),
    ("-aiplatform.googleapis.com", "Google Cloud Vertex AI"),
    (".openai.azure.com", "Microsoft Azure OpenAI"),
    (".services.ai.azure.com", "Microsoft Azure AI"),
    (".amazonaws.com", "Amazon Bedrock"),
    ("api.mistral.ai", "Mistral AI"),
    ("api.cohere.com", "Cohere"),
    ("api.cohere.ai", "Cohere"),
    ("api.deepseek.com", "DeepSeek"),
    ("api.x.ai", "xAI"),
    ("api.groq.com", "Groq"),
    ("api.together.xyz", "Together AI"),
    ("api.fireworks.ai", "Fireworks AI"),
    ("openrouter.ai", "OpenRouter"),
)
PROVIDER_NAMES = {"openai": "OpenAI", "anthropic": "Anthropic", "google": "Google"}
API_TYPES = {"openai-compatible": "OpenAI-compatible API", "anthropic": "Anthropic Messages API"}


@dataclass(frozen=True, slots=True)
class DisclosedProvider:
    """One resold provider as published."""

    name: str
    models: tuple[str, ...]
    api_types: tuple[str, ...]


def provider_display_name(channel: ChannelRoute) -> str:
    """The name under which a commercial channel's provider is published (see the module docstring)."""
    named = (channel.attestation.provider or "").strip()
    if named:
        return named
    host = ""
    if channel.endpoint:
        try:
            host = (urlsplit(channel.endpoint).hostname or "").lower()
        except ValueError:
            host = ""
    for pattern, name in KNOWN_HOSTS:
        if host == pattern or (pattern[0] in ".-" and host.endswith(pattern)):
            return name
    if channel.aup_provider in PROVIDER_NAMES:
        return PROVIDER_NAMES[channel.aup_provider]
    if channel.type == "anthropic":
        return "Anthropic"
    return host or "Unnamed provider"


def resold(channel: ChannelRoute) -> bool:
    """Whether a channel is published as resold: commercial type, attested commercial contract."""
    att = channel.attestation
    return channel.type in COMMERCIAL_CHANNEL_TYPES and att.kind == "commercial-contract" and att.attested


def disclosed_providers(channels: Iterable[ChannelRoute]) -> list[DisclosedProvider]:
    """The resold providers, grouped by display name (case-insensitive), sorted by name."""
    groups: dict[str, tuple[str, set[str], set[str]]] = {}
    for ch in channels:
        if not resold(ch):
            continue
        name = provider_display_name(ch)
        _, models, types = groups.setdefault(name.casefold(), (name, set(), set()))
        models.update(ch.models)
        types.add(API_TYPES.get(ch.type, ch.type))
    return [
        DisclosedProvider(name, tuple(sorted(models)), tuple(sorted(types)))
        for name, models, types in sorted(groups.values(), key=lambda g: g[0].casefold())
    ]


def disclosure_document(table: RoutingTable) -> dict[str, Any]:
    """The JSON document of the page (camelCase keys)."""
    byok = sorted({PROVIDER_NAMES.get(p, p) for ch in table.channels if ch.type == "byok-passthrough"
                   for p in ch.allowed_providers})
    self_hosted = sorted({m for ch in table.channels if ch.type == "vllm" for m in ch.models})
    return {
        "object": "llm_provider_disclosure",
        "operator": table.policy.reseller.operator_name,
        "providers": [
            {"name": p.name, "models": list(p.models), "apiTypes": list(p.api_types)}
            for p in disclosed_providers(table.channels)
        ],
        "bringYourOwnKey": byok,
        "selfHostedModels": self_hosted,
        "revision": table.version,
    }


_STYLE = (
    "body{font:16px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:48rem;margin:2rem auto;"
    "padding:0 1rem;color:#1a1a1a}h1{font-size:1.6rem}h2{font-size:1.15rem;margin-top:2rem}"
    "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem .6rem;"
    "border-bottom:1px solid #ddd;vertical-align:top}th{background:#f5f5f5}code{font-size:.9em}"
    "footer{margin-top:2.5rem;color:#666;font-size:.85rem}"
)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _models(models: Iterable[str]) -> str:
    return ", ".join(f"<code>{_e(m)}</code>" for m in models)


def render_html(doc: dict[str, Any]) -> str:
    """The page for people: small, self-contained (no scripts, no external resources), every value escaped."""
    operator = doc["operator"] or "The operator of this service"
    op = _e(operator)
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>LLM providers resold by {op}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n"
        "<h1>Large language model providers</h1>\n"
    ]
    providers = doc["providers"]
    if providers:
        parts.append(
            f"<p>{op} resells access to models of the providers listed below, under commercial API agreements "
            f"between {op} and each provider. Requests to these models are forwarded to the provider named, "
            "which processes them under its own terms and policies.</p>\n"
            "<table>\n<thead><tr><th>Provider</th><th>Models</th><th>API</th></tr></thead>\n<tbody>\n"
        )
        for p in providers:
            parts.append(
                f"<tr><td>{_e(p['name'])}</td><td>{_models(p['models'])}</td>"
                f"<td>{_e(', '.join(p['apiTypes']))}</td></tr>\n"
            )
        parts.append("</tbody>\n</table>\n")
    else:
        parts.append(f"<p>{op} does not resell any third-party model provider.</p>\n")
    if doc["selfHostedModels"]:
        parts.append(
            f"<h2>Self-hosted models</h2>\n<p>These models run on infrastructure operated by {op}; no third-party "
            f"model provider receives these requests: {_models(doc['selfHostedModels'])}.</p>\n"
        )
    if doc["bringYourOwnKey"]:
        parts.append(
            "<h2>Bring your own key</h2>\n<p>Requests made with your own provider key are sent to that provider "
            "under your own agreement with it and are not resold. Supported providers: "
            f"{_e(', '.join(doc['bringYourOwnKey']))}.</p>\n"
        )
    revision = f" Revision {_e(doc['revision'])}." if doc["revision"] else ""
    parts.append(
        f"</main>\n<footer>Generated from the service's current routing configuration.{revision} "
        'Also available as JSON (send <code>Accept: application/json</code>).</footer>\n</body>\n</html>\n'
    )
    return "".join(parts)


def wants_json(accept: str | None) -> bool:
    """Whether an ``Accept`` header prefers JSON: ``application/json`` is listed and its quality is at
    least that of ``text/html`` (wildcards count for HTML only). No header, or ``*/*``: HTML."""
    if not accept:
        return False
    q_json = -1.0
    q_html = -1.0
    for item in accept.split(","):
        media, _, params = item.strip().partition(";")
        media = media.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media == "application/json":
            q_json = max(q_json, q)
        elif media in ("text/html", "application/xhtml+xml", "text/*", "*/*"):
            q_html = max(q_html, q if media in ("text/html", "application/xhtml+xml") else q - 0.001)
    return q_json > 0 and q_json >= q_html


@dataclass(frozen=True, slots=True)
class Disclosure:
    """The precomputed answers of ``GET /legal/llm-providers`` for one routing table."""

    status: int
    html: bytes
    json: bytes

    def render(self, accept: str | None) -> tuple[int, str, bytes]:
        """``(status, content type, body)`` for a request with this ``Accept`` header."""
        if wants_json(accept):
            return self.status, JSON_TYPE, self.json
        return self.status, HTML_TYPE, self.html


_NOT_FOUND_JSON = json.dumps({"error": {
    "message": "No reseller disclosure is published by this service.",
    "type": "invalid_request_error", "param": None, "code": "not_found",
}}).encode()
_NOT_FOUND_HTML = (
    b'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>Not found</title></head>\n'
    b"<body><p>No reseller disclosure is published by this service.</p></body>\n</html>\n"
)
NOT_FOUND = Disclosure(404, _NOT_FOUND_HTML, _NOT_FOUND_JSON)


def compile_disclosure(table: RoutingTable) -> Disclosure:
    """The page for ``table``: 200 when ``reseller.disclosureRequired`` and at least one channel is
    bound, else :data:`NOT_FOUND`."""
    if not table.policy.reseller.disclosure_required or not table.channels:
        return NOT_FOUND
    doc = disclosure_document(table)
    body = json.dumps(doc, ensure_ascii=False, indent=2).encode() + b"\n"
    return Disclosure(200, render_html(doc).encode(), body)
