"""Traces: a server span per request, a GenAI client span per upstream attempt, exported over OTLP/HTTP.

Attributes follow the OpenTelemetry GenAI semantic conventions; span names and attribute values come from
config names, numbers and what the upstream answered, never from the request's content. A client's W3C
`traceparent` is continued, and each attempt sends its own span's `traceparent` upstream. The SDK is imported
only when tracing is on; off, a request never reaches this module.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from adapters.base import Endpoint, UpstreamError, UpstreamRequest
from gateway.config import TargetConfig
from observability.settings import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler

    from gateway.exchange import Exchange
    from observability.usage import OutputMeter

NONE = "none"
OPERATIONS = MappingProxyType(
    {Endpoint.CHAT: "chat", Endpoint.COMPLETION: "text_completion", Endpoint.EMBEDDING: "embeddings"}
)


def trace_headers(context: SpanContext) -> dict[str, str]:
    """W3C trace context headers that make `context` the parent of whatever the receiver does."""
    headers = {"traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"}
    if context.trace_state:
        headers["tracestate"] = context.trace_state.to_header()
    return headers


class Tracing:
    """Built once at start-up: the tracer provider, its processor, and each target's span name and attributes."""

    def __init__(
        self,
        settings: TracingSettings,
        targets: Mapping[str, TargetConfig],
        providers: Mapping[str, str],
        processor: SpanProcessor | None = None,
        classes: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        if processor is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint))
        # Head sampling of new traces happens in start(), before any span exists, so an unsampled request costs
        # one random number; the SDK's sampler only follows (or ignores) a client's sampled flag.
        sampling = settings.sampling
        self._ratio = sampling.ratio
        self._follow_parent = sampling.parent_based
        self._random = random.Random().random
        self.provider: TracerProvider = TracerProvider(
            sampler=_sampler(sampling.parent_based),
            resource=Resource.create({"service.name": settings.service_name}),
            shutdown_on_exit=False,
        )
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("switchyard")
        self._propagator = TraceContextTextMapPropagator()
        self._servers = {
            endpoint: (f"POST /v1{endpoint.path}", {"http.request.method": "POST", "http.route": f"/v1{endpoint.path}"})
            for endpoint in Endpoint
        }
        self._attempts = {
            (name, endpoint): _attempt_spec(name, target, providers.get(name, NONE), endpoint, (classes or {}).get(name))
            for name, target in targets.items()
            for endpoint in Endpoint
        }

    def start(self, endpoint: Endpoint, headers: Mapping[bytes, bytes]) -> RequestTrace | None:
        """The request's trace, or None when it is not sampled and there is no client trace to continue."""
        parent: Context | None = None
        traceparent = headers.get(b"traceparent")
        if (traceparent is None or not self._follow_parent) and self._random() >= self._ratio:
            return None
        if traceparent is not None:
            carrier = {"traceparent": traceparent.decode("latin-1")}
            tracestate = headers.get(b"tracestate")
            if tracestate is not None:
                carrier["tracestate"] = tracestate.decode("latin-1")
            parent = self._propagator.extract(carrier)
        name, attributes = self._servers[endpoint]
        span = self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER, attributes=attributes)
        return RequestTrace(self, span, endpoint)

    def attempt_spec(self, target: str, endpoint: Endpoint) -> tuple[str, dict[str, Any]]:
        return self._attempts[(target, endpoint)]

    def shutdown(self) -> None:
        """Exports what is still queued, then stops."""
        self.provider.shutdown()


class RequestTrace:
    """One request's spans. Under a client's unsampled traceparent it only hands that trace context on upstream."""

    __slots__ = ("_tracing", "span", "recording", "_context", "_endpoint", "attempt")

    def __init__(self, tracing: Tracing, span: Span, endpoint: Endpoint) -> None:
        self._tracing = tracing
        self.span = span
        self.recording = span.is_recording()
        self._context = set_span_in_context(span) if self.recording else None
        self._endpoint = endpoint
        self.attempt: Span | None = None

    def attempt_started(self, target: str, request: UpstreamRequest) -> None:
        if not self.recording:
            request.headers.update(trace_headers(self.span.get_span_context()))
            return
        name, attributes = self._tracing.attempt_spec(target, self._endpoint)
        self.attempt = self._tracing.tracer.start_span(name, context=self._context, kind=SpanKind.CLIENT, attributes=attributes)
        request.headers.update(trace_headers(self.attempt.get_span_context()))

    def attempt_failed(self, error: UpstreamError) -> None:
        span = self.attempt
        if span is None:
            return
        # The kind or status only: an upstream's error message may quote the request back.
        span.set_attribute("error.type", str(error.upstream_status) if error.upstream_status else error.kind)
        span.set_status(Status(StatusCode.ERROR))
        span.end()
        self.attempt = None

    def finish(self, exchange: Exchange, output: OutputMeter | None) -> None:
        if not self.recording:
            return
        status = exchange.status
        span = self.attempt
        if span is not None:
            usage = exchange.usage
            answer: dict[str, Any] = {
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
            }
            if output is not None:
                if output.model:
                    answer["gen_ai.response.model"] = output.model
                if output.finish_reasons:
                    answer["gen_ai.response.finish_reasons"] = tuple(output.finish_reasons)
            if status >= 400:  # the answer broke off mid-stream, or its client left
                answer["error.type"] = str(status)
                span.set_status(Status(StatusCode.ERROR))
            span.set_attributes(answer)
            span.end()
            self.attempt = None
        server = self.span
        server.set_attributes(
            {
                "http.response.status_code": status,
                "switchyard.request_id": exchange.request_id.decode(),
                "switchyard.tenant": exchange.tenant or NONE,
                "switchyard.route": exchange.route or NONE,
                "switchyard.target": exchange.target or NONE,
                "switchyard.policy.version": exchange.policy_version,
            }
        )
        if exchange.cost_usd is not None:
            server.set_attribute("switchyard.cost_usd", exchange.cost_usd)
        if status >= 500:
            server.set_attribute("error.type", str(status))
            server.set_status(Status(StatusCode.ERROR))
        server.end()


def _attempt_spec(
    name: str, target: TargetConfig, provider: str, endpoint: Endpoint, kind_openness: tuple[str, str] | None
) -> tuple[str, dict[str, Any]]:
    operation = OPERATIONS[endpoint]
    model = target.model or name
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
    }
    if kind_openness is not None:
        attributes["switchyard.target.kind"], attributes["switchyard.target.openness"] = kind_openness
    if target.base_url:
        url = urlsplit(target.base_url)
        if url.hostname:
            attributes["server.address"] = url.hostname
            attributes["server.port"] = url.port or (443 if url.scheme == "https" else 80)
    return f"{operation} {model}", attributes


def _sampler(follow_parent: bool) -> Sampler:
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    return ParentBased(ALWAYS_ON) if follow_parent else ALWAYS_ON
