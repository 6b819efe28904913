"""Kubernetes API errors: the ``Status`` objects a real API server answers with.

Every failure the local API server reports is an :class:`ApiError`; its :meth:`ApiError.status`
is the ``kind: Status`` body (``apiVersion: v1``, ``status: Failure``, ``message``, ``reason``,
``code``, ``details``) that clients such as kubectl, Kopf and kubernetes-asyncio decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One invalid field, rendered like Kubernetes' ``field.Error`` (``spec.x: Required value``)."""

    field: str
    reason: str  # a metav1.CauseType, e.g. FieldValueRequired, FieldValueInvalid
    detail: str  # e.g. 'Required value' or 'Invalid value: -1: must be >= 0'

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}" if self.field else self.detail

    def cause(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.detail, "field": self.field}


@dataclass
class ApiError(Exception):
    """A failed API request, rendered as a ``Status`` body with the HTTP ``code``."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(name: str | None, group: str, kind: str) -> dict[str, Any]:
    details: dict[str, Any] = {"group": group, "kind": kind} if group else {"kind": kind}
    if name:
        details["name"] = name
    return details


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(plural, group)} "{name}" not found', _details(name, group, plural))


def resource_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", f"the server could not find the requested resource ({path})", {})


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{_qualified(plural, group)} "{name}" already exists', _details(name, group, plural)
    )


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    message = f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(name, group, plural))


STALE = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid, worded as Kubernetes does: ``Kind.group "name" is invalid: [a: ..., b: ...]``."""
    listed = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
    qualified = f"{kind}.{group}" if group else kind
    details = _details(name, group, kind)
    details["causes"] = [e.cause() for e in errors]
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {listed}', details)


def unprocessable(detail: str) -> ApiError:
    """422 for a patch that cannot be applied (a failed JSON-patch ``test``, a missing path)."""
    return ApiError(
        422,
        "Invalid",
        f"the server rejected our request due to an error in our request: {detail}",
        {"causes": [{"reason": "UnexpectedServerResponse", "message": detail}]},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message, {})


def forbidden(plural: str, group: str, name: str, why: str) -> ApiError:
    message = f'{_qualified(plural, group)} "{name}" is forbidden: {why}'
    return ApiError(403, "Forbidden", message, _details(name, group, plural))


def method_not_allowed(method: str) -> ApiError:
    message = f"the server does not allow this method on the requested resource ({method})"
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> ApiError:
    message = (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml "
        f"(got {content_type!r})"
    )
    return ApiError(415, "UnsupportedMediaType", message)


def expired(message: str) -> ApiError:
    """410 Gone: a watch or ``continue`` token older than the retained event history."""
    return ApiError(410, "Expired", message, {})


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}", {})
