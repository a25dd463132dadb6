"""Opt-in Prometheus metrics (`agent.metrics = true`): GET /metrics in the text
exposition format 0.0.4, written here rather than with prometheus_client: five metric
families do not justify a dependency, and this keeps the agent's footprint small.

No label carries personal data: operations are the wire method names, failures the
closed list of wire error codes, routes the router's own patterns.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agent.protocol.errors import error_for
from agent.signing import Authorization, SigningService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Card signatures take 50 ms to a few seconds; PIN prompts are not inside these spans.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _escape(value: str) -> str:
    """Label values: backslash, double quote and line feed escaped (exposition format)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if value != int(value) else str(int(value))


@dataclass
class Counter:
    name: str
    help: str
    label_names: tuple[str, ...] = ()
    values: dict[tuple[str, ...], float] = field(default_factory=dict)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        if len(labels) != len(self.label_names) or amount < 0:
            raise ValueError(f"{self.name}: labels {self.label_names}, amount >= 0")
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_number(value)}"


@dataclass
class Histogram:
    name: str
    help: str
    label_names: tuple[str, ...] = ()
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    # per label set: (count in each bucket, not cumulative; sum; count)
    series: dict[tuple[str, ...], tuple[list[int], float, int]] = field(default_factory=dict)

    def observe(self, seconds: float, *labels: str) -> None:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name}: labels {self.label_names}")
        counts, total, count = self.series.get(labels, ([0] * len(self.buckets), 0.0, 0))
        for i, bound in enumerate(self.buckets):
            if seconds <= bound:
                counts[i] += 1
                break
        self.series[labels] = (counts, total + seconds, count + 1)

    def count(self, *labels: str) -> int:
        return self.series.get(labels, ([], 0.0, 0))[2]

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, (counts, total, count) in sorted(self.series.items()):
            cumulative = 0
            for bound, n in zip(self.buckets, counts, strict=True):
                cumulative += n
                le = _labels(self.label_names, labels, f'le="{_number(bound)}"')
                yield f"{self.name}_bucket{le} {cumulative}"
            inf = _labels(self.label_names, labels, 'le="+Inf"')
            yield f"{self.name}_bucket{inf} {count}"
            yield f"{self.name}_sum{_labels(self.label_names, labels)} {_number(total)}"
            yield f"{self.name}_count{_labels(self.label_names, labels)} {count}"


@dataclass
class Gauge:
    name: str
    help: str
    read: Callable[[], float]

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        yield f"{self.name} {_number(self.read())}"


class AgentMetrics:
    """The agent's metric families; `render()` is the body of GET /metrics."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.started = time.time()
        self.signatures = Counter(
            "qsign_agent_signatures_total", "Signatures the tokens made, by operation.",
            ("operation",))
        self.requests = Counter(
            "qsign_agent_operations_total", "Signing operations finished (any outcome).",
            ("operation",))
        self.failures = Counter(
            "qsign_agent_failures_total", "Signing operations that failed, by wire error code.",
            ("operation", "code"))
        self.token_events = Counter(
            "qsign_agent_token_events_total", "Token insertions, removals and changes.",
            ("event",))
        self.operation_seconds = Histogram(
            "qsign_agent_operation_duration_seconds",
            "Time for a signing operation, OTP check to journaled signatures.", ("operation",))
        self.http_requests = Counter(
            "qsign_agent_http_requests_total", "HTTP requests by route and status.",
            ("route", "status"))
        self.http_seconds = Histogram(
            "qsign_agent_http_request_duration_seconds",
            "HTTP request latency by route (WebSocket sessions excluded).", ("route",))
        self.gauges: list[Gauge] = []

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges.append(Gauge(name, help_text, read))

    def render(self) -> str:
        lines = [
            "# HELP qsign_agent_info The agent's version.",
            "# TYPE qsign_agent_info gauge",
            f'qsign_agent_info{{version="{_escape(self.version)}"}} 1',
            "# HELP qsign_agent_start_time_seconds When the agent started (Unix time).",
            "# TYPE qsign_agent_start_time_seconds gauge",
            f"qsign_agent_start_time_seconds {_number(round(self.started, 3))}",
        ]
        families: list[Counter | Histogram | Gauge] = [
            self.signatures, self.requests, self.failures, self.token_events,
            self.operation_seconds, self.http_requests, self.http_seconds, *self.gauges]
        for family in families:
            lines.extend(family.render())
        return "\n".join(lines) + "\n"

    async def time_operation(self, operation: str, made: Callable[[Any], int],
                             call: Awaitable[Any]) -> Any:
        """Await `call`, counting it, its signatures (`made(result)`) or its failure."""
        start = time.monotonic()
        try:
            result = await call
        except BaseException as exc:
            self.failures.inc(operation, failure_code(exc))
            raise
        else:
            self.signatures.inc(operation, amount=made(result))
            return result
        finally:
            self.requests.inc(operation)
            self.operation_seconds.observe(time.monotonic() - start, operation)


def failure_code(exc: BaseException) -> str:
    """The wire error code a failure becomes (agent.protocol.errors is the one mapping)."""
    if isinstance(exc, TimeoutError | ConnectionError):
        return "UNAVAILABLE"
    return error_for(exc, log_unexpected=False).code.name


class MeteredSigning(SigningService):
    """The signing service with every operation counted and timed."""

    def __init__(self, metrics: AgentMetrics, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics

    async def authorize(self, **kwargs: Any) -> Authorization:
        hashes = len(kwargs.get("hashes") or ())
        result: Authorization = await self._metrics.time_operation(
            "credentials/authorize", lambda _: hashes, super().authorize(**kwargs))
        return result

    async def sign_hash(self, **kwargs: Any) -> list[bytes]:
        # Delivers signatures the token made during authorize: none made here.
        result: list[bytes] = await self._metrics.time_operation(
            "signatures/signHash", lambda _: 0, super().sign_hash(**kwargs))
        return result

    async def sign_pdfs(self, **kwargs: Any) -> list[bytes]:
        result: list[bytes] = await self._metrics.time_operation(
            "documents/signPdf", len, super().sign_pdfs(**kwargs))
        return result


METRICS = web.AppKey("metrics", AgentMetrics)


def route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request,
                             handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                             ) -> web.StreamResponse:
    """Count every HTTP request (refused ones too) and time the non-WebSocket ones."""
    metrics = request.app[METRICS]
    route = route_name(request)
    start = time.monotonic()
    status, session = 500, False
    try:
        response = await handler(request)
        status, session = response.status, isinstance(response, web.WebSocketResponse)
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.http_requests.inc(route, str(status))
        if not session:  # a WebSocket's time is its session's length, not a latency
            metrics.http_seconds.observe(time.monotonic() - start, route)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """GET /metrics: the text exposition; `no-store` so a cache never serves old counts."""
    return web.Response(text=request.app[METRICS].render(),
                        headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})
