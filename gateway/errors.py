"""Client-facing errors in OpenAI's shape (``/v1/chat/completions`` etc.) or Anthropic's (``/v1/messages``)."""

from __future__ import annotations

import json
from typing import Any

#: Anthropic's error ``type`` for each HTTP status.
ANTHROPIC_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
    529: "overloaded_error",
}


class GatewayError(Exception):
    """An error answered to the client. ``type``/``code``/``param`` are OpenAI's fields; the Anthropic
    shape is derived from the status. Messages are for people and never contain a credential."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers

    def openai_body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def anthropic_body(self) -> dict[str, Any]:
        etype = ANTHROPIC_TYPES.get(self.status, "api_error" if self.status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": etype, "message": self.message}}

    def body_bytes(self, client_format: str) -> bytes:
        body = self.anthropic_body() if client_format == "anthropic" else self.openai_body()
        return json.dumps(body).encode()


def missing_key() -> GatewayError:
    return GatewayError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header using "
        "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the x-api-key header for /v1/messages.",
    )


def invalid_key() -> GatewayError:
    return GatewayError(401, "Incorrect API key provided.", code="invalid_api_key")


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"Request body too large: the limit is {limit} bytes.", code="request_too_large"
    )


def bad_request(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def not_found(message: str, code: str = "model_not_found", param: str | None = "model") -> GatewayError:
    return GatewayError(404, message, code=code, param=param)


def forbidden(message: str, code: str) -> GatewayError:
    return GatewayError(403, message, type="permission_error", code=code)


def upstream_unavailable(message: str, status: int = 503, code: str = "upstream_unavailable") -> GatewayError:
    return GatewayError(status, message, type="server_error", code=code)
