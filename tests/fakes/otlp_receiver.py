"""A real OTLP/HTTP trace receiver on a free port: what an OpenTelemetry Collector would get from the gateway.

It accepts `POST /v1/traces` (protobuf, optionally gzip) like a collector, records every export request, and
decodes the spans with opentelemetry-proto's own classes.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from .base import FakeUpstream
from .polling import wait_until
from .wire import UpstreamRejection

SERVER = Span.SpanKind.SPAN_KIND_SERVER
CLIENT = Span.SpanKind.SPAN_KIND_CLIENT
STATUS_ERROR = Status.StatusCode.STATUS_CODE_ERROR


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    kind: int
    trace_id: str  # hex, as in a traceparent header
    span_id: str
    parent_span_id: str  # "" for a root span
    attributes: dict[str, Any]
    status_code: int
    resource: dict[str, Any]


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: any_value(item.value) for item in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


class OTLPReceiver(FakeUpstream):
    def __init__(self, name: str = "otlp") -> None:
        super().__init__(name)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/traces", self._traces)]

    def error_response(self, rejection: UpstreamRejection) -> web.Response:
        return web.Response(status=rejection.status, text=rejection.message)

    @property
    def base_url(self) -> str:
        return self.origin

    @property
    def traces_endpoint(self) -> str:
        return f"{self.origin}/v1/traces"

    async def _traces(self, request: web.Request) -> web.Response:
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf")

    def raw_exports(self) -> list[bytes]:
        """Every export request body as sent, decompressed."""
        bodies = []
        for record in self.requests_to("/v1/traces"):
            gzipped = (record.header("content-encoding") or "") == "gzip"
            bodies.append(gzip.decompress(record.raw) if gzipped else record.raw)
        return bodies

    def spans(self) -> list[ReceivedSpan]:
        received = []
        for body in self.raw_exports():
            export = ExportTraceServiceRequest.FromString(body)
            for resource_spans in export.resource_spans:
                resource = {kv.key: any_value(kv.value) for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        received.append(
                            ReceivedSpan(
                                name=span.name,
                                kind=span.kind,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                attributes={kv.key: any_value(kv.value) for kv in span.attributes},
                                status_code=span.status.code,
                                resource=resource,
                            )
                        )
        return received

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        """Waits until at least `count` spans have arrived and returns them all."""

        def enough() -> list[ReceivedSpan] | None:
            spans = self.spans()
            return spans if len(spans) >= count else None

        return wait_until(enough, timeout=timeout, message=f"{count} spans at {self.name}")
