"""`switchyard serve --workers 2`: whichever worker answers /metrics, it reports the totals of both."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from fakes import wait_until
from fakes.keys import make_key
from fakes.metrics import scrape

KEY, KEY_HASH = make_key("acme")


def access_lines(gateway) -> list[dict]:
    return [json.loads(line) for line in gateway.log_text().splitlines() if line.startswith("{")]


def test_two_workers_report_exact_totals(start_gateway):
    config = {
        "targets": {"echo": {"adapter": "echo"}},
        "tenants": {"acme": {"keys": [KEY_HASH], "models": ["*"]}},
        "observability": {"access_log": True},
    }
    gateway = start_gateway(config, args=["--workers", "2"])
    body = {"model": "echo", "messages": [{"role": "user", "content": "count me"}]}
    sent = 0

    def both_workers_served() -> bool:
        nonlocal sent
        for _ in range(10):  # a new connection each time, so the kernel may hand it to either worker
            response = httpx.post(gateway.openai_base_url + "/chat/completions", json=body,
                                  headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
            assert response.status_code == 200
            sent += 1
        return len({line["pid"] for line in access_lines(gateway)}) == 2

    wait_until(both_workers_served, timeout=30, interval=0)
    tokens_per_request = httpx.post(gateway.openai_base_url + "/chat/completions", json=body,
                                    headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()["usage"]
    sent += 1
    # A worker records a request just after its last byte went out, so the last one may still be on its way.
    wait_until(lambda: len(access_lines(gateway)) == sent, timeout=10)
    labels = {"route": "echo", "target": "echo", "tenant": "acme"}
    for _ in range(6):  # each scrape may land on either worker
        metrics = scrape(gateway)
        assert metrics.value("switchyard_requests_total", **labels, status="200") == sent
        assert metrics.value("switchyard_request_duration_seconds_count", **labels) == sent
        assert metrics.value("switchyard_tokens_total", **labels, type="input") == sent * tokens_per_request["prompt_tokens"]
        assert metrics.value("switchyard_tokens_total", **labels, type="output") == sent * tokens_per_request["completion_tokens"]
        assert metrics.value("switchyard_in_flight_requests") == 0


def test_the_workers_metric_directory_is_removed_at_exit(start_gateway, tmp_path):
    # The CLI makes a fresh directory per run under TMPDIR; pointing TMPDIR at an empty folder makes it visible.
    config = {"targets": {"echo": {"adapter": "echo"}}, "tenants": {"acme": {"keys": [KEY_HASH], "models": ["*"]}}}
    gateway = start_gateway(config, args=["--workers", "2"], env={"TMPDIR": str(tmp_path)})
    created = list(Path(tmp_path).glob("switchyard-metrics-*"))
    assert len(created) == 1
    answer = httpx.post(gateway.openai_base_url + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                        json={"model": "echo", "messages": [{"role": "user", "content": "x"}]}, timeout=10)
    assert answer.status_code == 200
    # The worker counts the request just after its last byte went out: wait for its counter file.
    wait_until(lambda: any(created[0].glob("counter_*.db")), timeout=10, message="a worker's counter file")
    assert gateway.stop() == 0
    assert not created[0].exists()


def test_a_single_worker_keeps_metrics_in_memory(start_gateway, tmp_path):
    config = {"targets": {"echo": {"adapter": "echo"}}, "tenants": {"acme": {"keys": [KEY_HASH], "models": ["*"]}}}
    gateway = start_gateway(config, args=["--workers", "1"], env={"TMPDIR": str(tmp_path)})
    assert scrape(gateway).matching("switchyard_in_flight_requests")
    assert list(Path(tmp_path).glob("switchyard-metrics-*")) == []
