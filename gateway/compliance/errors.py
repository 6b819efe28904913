"""The client-facing refusals of the compliance checks, in OpenAI's and Anthropic's error shapes.

* Sanctioned region / unknown country: HTTP **451** (RFC 7725), OpenAI shape
  ``{"error": {"message", "type": "request_forbidden", "param": null,
  "code": "unavailable_for_legal_reasons"}}`` (``request_forbidden`` is the type OpenAI itself uses
  when it refuses a country); Anthropic shape ``{"type": "error", "error": {"type":
  "permission_error", "message"}}``.
* AUP block: HTTP **400**, OpenAI shape with ``type: invalid_request_error`` and
  ``code: content_policy_violation``; Anthropic shape ``invalid_request_error``. The message names
  the policy and category, never the pattern that matched.

:class:`ComplianceError` is a :class:`~newapi_gateway.errors.GatewayError`, so the gateway answers
it like any other error (``body_bytes(client_format)``); its Anthropic ``type`` is set explicitly
instead of being derived from the status.
"""

from __future__ import annotations

from typing import Any

from ..errors import GatewayError
from .aup import AupVerdict
from .geo import GeoDecision

GEO_STATUS = 451
GEO_CODE = "unavailable_for_legal_reasons"
GEO_TYPE = "request_forbidden"
GEO_ANTHROPIC_TYPE = "permission_error"
AUP_STATUS = 400
AUP_CODE = "content_policy_violation"
AUP_TYPE = "invalid_request_error"
AUP_ANTHROPIC_TYPE = "invalid_request_error"


class ComplianceError(GatewayError):
    """A refusal by a compliance check, with an explicit Anthropic error type."""

    def __init__(self, status: int, message: str, type: str, code: str, anthropic_type: str) -> None:
        super().__init__(status, message, type=type, code=code)
        self.anthropic_type = anthropic_type

    def anthropic_body(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.anthropic_type, "message": self.message}}


def geo_message(decision: GeoDecision) -> str:
    """The human message of a geo refusal (names the matched region, which the client may contest)."""
    if decision.reason == "unknown_country":
        return (
            "This request cannot be served: the country it comes from could not be determined, and this "
            "model may only be used from known, permitted locations. If you connect through an anonymising "
            "proxy or VPN, connect directly and retry."
        )
    where = f" ({decision.region})" if decision.region else ""
    return (
        f"This service is not available in your country or region{where} for legal reasons: sanctions and "
        "export-control rules bind the operator and its model providers."
    )


def geo_error(decision: GeoDecision) -> ComplianceError:
    """The 451 refusal for a blocking :class:`GeoDecision`."""
    return ComplianceError(GEO_STATUS, geo_message(decision), GEO_TYPE, GEO_CODE, GEO_ANTHROPIC_TYPE)


def aup_message(verdict: AupVerdict) -> str:
    """The human message of an AUP refusal: the policy and category, never the matching pattern."""
    if len(verdict.providers) > 1:
        policy = f"the acceptable use policies ({', '.join(verdict.providers)})"
    elif verdict.providers:
        policy = f"the {verdict.providers[0]} acceptable use policy"
    else:
        policy = "the acceptable use policy"
    return (
        f"This request was blocked before reaching the model: it appears to violate {policy} enforced by "
        f"this service (category: {verdict.category}). If you believe this is a mistake, contact the "
        "service operator."
    )


def aup_error(verdict: AupVerdict) -> ComplianceError:
    """The 400 refusal for a blocking :class:`AupVerdict`."""
    return ComplianceError(AUP_STATUS, aup_message(verdict), AUP_TYPE, AUP_CODE, AUP_ANTHROPIC_TYPE)


def geo_error_body(decision: GeoDecision, client_format: str) -> dict[str, Any]:
    """The 451 body in the client's format (``openai`` or ``anthropic``)."""
    err = geo_error(decision)
    return err.anthropic_body() if client_format == "anthropic" else err.openai_body()


def aup_error_body(verdict: AupVerdict, client_format: str) -> dict[str, Any]:
    """The 400 body in the client's format (``openai`` or ``anthropic``)."""
    err = aup_error(verdict)
    return err.anthropic_body() if client_format == "anthropic" else err.openai_body()
