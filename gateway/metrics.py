"""A tiny Prometheus registry: counters, gauges and histograms with fixed label names.

Chosen over prometheus_client for the hot path: an increment is one dict update on a label tuple
(no per-call label validation, locks or child lookups), and the exposition is rendered only when
``/metrics`` is scraped. Single-threaded use (the event loop) is assumed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable

LabelValues = tuple[str, ...]

#: Latency buckets (seconds), fine at the low end where a proxy hop lives.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v: float) -> str:
    if v == int(v):
        return str(int(v))
    return repr(v)


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        self.name = name
        self.help = help
        self.label_names = labels

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, help, labels)
        self.values: dict[LabelValues, float] = {}

    def inc(self, labels: LabelValues = (), n: float = 1) -> None:
        values = self.values
        values[labels] = values.get(labels, 0) + n

    def get(self, labels: LabelValues = ()) -> float:
        return self.values.get(labels, 0)

    def render(self) -> list[str]:
        return [f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in self.values.items()]


class Gauge(_Metric):
    """A gauge set directly, or computed at scrape time by ``collect`` (label values -> value)."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help: str,
        labels: tuple[str, ...] = (),
        collect: Callable[[], Iterable[tuple[LabelValues, float]]] | None = None,
    ) -> None:
        super().__init__(name, help, labels)
        self.values: dict[LabelValues, float] = {}
        self.collect = collect

    def set(self, labels: LabelValues, value: float) -> None:
        self.values[labels] = value

    def clear(self) -> None:
        self.values.clear()

    def render(self) -> list[str]:
        items = self.collect() if self.collect is not None else self.values.items()
        return [f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in items]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, name: str, help: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] = LATENCY_BUCKETS
    ) -> None:
        super().__init__(name, help, labels)
        self.buckets = buckets
        # per label tuple: [count per bucket..., +Inf count, sum]
        self.values: dict[LabelValues, list[float]] = {}

    def observe(self, labels: LabelValues, value: float) -> None:
        row = self.values.get(labels)
        if row is None:
            row = self.values[labels] = [0.0] * (len(self.buckets) + 2)
        row[bisect_left(self.buckets, value)] += 1
        row[-1] += value

    def count(self, labels: LabelValues = ()) -> int:
        row = self.values.get(labels)
        return int(sum(row[:-1])) if row else 0

    def render(self) -> list[str]:
        out: list[str] = []
        for k, row in self.values.items():
            acc = 0.0
            plain = _labels(self.label_names, k)
            for bound, n in zip(self.buckets, row, strict=False):
                acc += n
                le = 'le="' + _num(bound) + '"'
                out.append(f"{self.name}_bucket{_labels(self.label_names, k, le)} {_num(acc)}")
            acc += row[len(self.buckets)]
            inf = _labels(self.label_names, k, 'le="+Inf"')
            out.append(f"{self.name}_bucket{inf} {_num(acc)}")
            out.append(f"{self.name}_sum{plain} {row[-1]!r}")
            out.append(f"{self.name}_count{plain} {_num(acc)}")
        return out


class Registry:
    def __init__(self) -> None:
        self.metrics: list[_Metric] = []

    def add(self, metric: _Metric) -> None:
        self.metrics.append(metric)

    def render(self) -> bytes:
        lines: list[str] = []
        for m in self.metrics:
            lines.extend(m.header())
            lines.extend(m.render())
        return ("\n".join(lines) + "\n").encode()


class GatewayMetrics:
    """The gateway's metrics (names from the product seed where it names them)."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.requests = Counter(
            "gateway_requests_total", "Requests answered, by tier, requested model, channel and HTTP status.",
            ("tier", "model", "channel", "code"),
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds", "Time from request to the last byte answered, by endpoint.",
            ("endpoint",),
        )
        self.model_routes = Counter(
            "gateway_model_routes_total", "Routed requests by requested model (from) and served model (to).",
            ("from", "to"),
        )
        self.upstream_duration = Histogram(
            "gateway_upstream_duration_seconds",
            "Upstream latency until the response headers (per attempt), by channel and outcome.",
            ("channel", "outcome"),
        )
        self.failovers = Counter(
            "gateway_failovers_total", "Attempts abandoned for the next candidate, by channel and reason.",
            ("channel", "reason"),
        )
        self.circuit_state = Gauge(
            "gateway_circuit_state", "Circuit breaker state per channel: 0 closed, 1 open, 2 half-open.",
            ("channel",),
        )
        self.circuit_transitions = Counter(
            "gateway_circuit_transitions_total", "Circuit breaker transitions, by channel and new state.",
            ("channel", "state"),
        )
        self.reloads = Counter(
            "gateway_routing_table_reloads_total", "Routing table / credentials loads, by source and result.",
            ("source", "result"),
        )
        self.table_info = Gauge(
            "gateway_routing_table_info", "The routing table in use (value 1), by version and instance.",
            ("version", "instance"),
        )
        self.stream_aborts = Counter(
            "gateway_stream_aborts_total", "Streams ended early, by side (client or upstream).", ("side",),
        )
        for m in (
            self.requests, self.duration, self.model_routes, self.upstream_duration, self.failovers,
            self.circuit_state, self.circuit_transitions, self.reloads, self.table_info, self.stream_aborts,
        ):
            r.add(m)

    def render(self) -> bytes:
        return self.registry.render()
