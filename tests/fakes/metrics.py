"""Reading a gateway's /metrics the way Prometheus does: prometheus_client's own text parser."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from .gateway_process import GatewayProcess

# The series a metric family exposes, by type, whether or not it has samples yet.
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "summary": ("_sum", "_count")}


@dataclass
class Scrape:
    text: str
    samples: list[Sample] = field(init=False)
    series_names: set[str] = field(init=False)  # every name a query could use, e.g. switchyard_requests_total

    def __post_init__(self) -> None:
        self.samples = []
        self.series_names = set()
        for family in text_string_to_metric_families(self.text):
            self.samples.extend(family.samples)
            self.series_names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
            self.series_names.update(sample.name for sample in family.samples)

    def matching(self, name: str, **labels: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name: str, **labels: str) -> float:
        """The sum over every series of `name` whose labels include `labels` (0 when there is none)."""
        return sum(sample.value for sample in self.matching(name, **labels))

    def label_values(self) -> set[str]:
        return {value for sample in self.samples for value in sample.labels.values()}


def scrape(gateway: GatewayProcess) -> Scrape:
    status, headers, body = gateway.http_get("/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain"), headers
    return Scrape(body.decode())
