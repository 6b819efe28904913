"""OpenTelemetry: one span per request (``gateway.request``) and one per upstream attempt
(``gateway.upstream``). Off by default: with no tracer the request path makes no tracing calls at all.

Span attributes are routing facts only (endpoint, models, channel, status, attempt); never headers,
keys or bodies.
"""

from __future__ import annotations

from typing import Literal

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Tracer

Exporter = Literal["none", "console"]


def make_tracer(
    exporter: Exporter, service_name: str = "newapi-gateway"
) -> tuple[Tracer | None, TracerProvider | None]:
    """A tracer for ``exporter`` (``none``: no tracer) and its provider (shut it down at exit)."""
    if exporter == "none":
        return None, None
    span_exporter: SpanExporter = ConsoleSpanExporter()
    return tracer_with(span_exporter, service_name)


def tracer_with(
    exporter: SpanExporter, service_name: str = "newapi-gateway", batch: bool = True
) -> tuple[Tracer, TracerProvider]:
    """A tracer exporting to ``exporter`` (tests pass the SDK's in-memory exporter with ``batch=False``)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    return provider.get_tracer("newapi_gateway"), provider
