"""The ops kit in observability/: alert rules (promtool), the Grafana dashboard, and a real Prometheus scraping a
real gateway, evaluating the shipped rules and every dashboard query against the gateway's own series."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import openai
import pytest
import yaml

from fakes import wait_until
from fakes.gateway_process import REPO_ROOT
from fakes.keys import make_key
from fakes.metrics import scrape
from fakes.network import free_port

KEY, KEY_HASH = make_key("acme")
KIT = REPO_ROOT / "observability"
RULES = KIT / "alerts.yaml"
DASHBOARD = KIT / "grafana-dashboard.json"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `make test` installs the Debian package prometheus")
    return path


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def concrete(query: str) -> str:
    """A dashboard query as Grafana would send it with every variable at "All"."""
    return query.replace("$__rate_interval", "1m").replace("$tenant", ".*").replace("$route", ".*")


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


# ----- alert rules -----------------------------------------------------------------------------------------------


def test_promtool_accepts_the_rules():
    result = subprocess.run([tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_alerts_fire_when_they_should_and_not_otherwise(tmp_path):
    """promtool's rule unit tests: synthetic series in, alerts (with their rendered summaries) out."""
    descriptions = {rule["alert"]: rule["annotations"]["description"] for rule in rules()}

    def alert(name: str, summary: str, **labels: str) -> dict:
        return {"exp_labels": labels, "exp_annotations": {"summary": summary, "description": descriptions[name]}}

    cases = [
        {
            "interval": "1m",
            "input_series": [
                {"series": 'switchyard_requests_total{route="chat",status="200"}', "values": "0+90x30"},
                {"series": 'switchyard_requests_total{route="chat",status="502"}', "values": "0+10x30"},
                {"series": 'switchyard_requests_total{route="embed",status="200"}', "values": "0+99x30"},
                {"series": 'switchyard_requests_total{route="embed",status="503"}', "values": "0+1x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "SwitchyardHighErrorRate", "exp_alerts": []},  # not for 5m yet
                {"eval_time": "15m", "alertname": "SwitchyardHighErrorRate", "exp_alerts": [
                    alert("SwitchyardHighErrorRate", "Switchyard route chat fails 10% of its requests",
                          severity="page", route="chat"),
                ]},
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {"series": 'switchyard_circuit_open{instance="a",target="gpt-4o"}', "values": "0 0 1 1 1 1 1"},
                {"series": 'switchyard_circuit_open{instance="b",target="gpt-4o"}', "values": "0 0 0 0 0 0 0"},
                {"series": 'switchyard_circuit_open{instance="a",target="llama"}', "values": "0 0 0 0 0 0 0"},
                {"series": 'switchyard_redis_up{instance="a"}', "values": "1 1 0 0 0 0 0"},
                {"series": 'switchyard_ratelimit_rejections_total{tenant="acme",limit="usd_per_day"}', "values": "0 0 0 3 3 3 3"},
                {"series": 'switchyard_ratelimit_rejections_total{tenant="beta",limit="requests_per_minute"}', "values": "0 5 9 20 30 40 50"},
            ],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "SwitchyardCircuitOpen", "exp_alerts": [
                    alert("SwitchyardCircuitOpen", "Switchyard's circuit to target gpt-4o is open",
                          severity="ticket", target="gpt-4o"),
                ]},
                {"eval_time": "5m", "alertname": "SwitchyardRedisDown", "exp_alerts": [
                    alert("SwitchyardRedisDown", "Switchyard replica a cannot reach Redis", severity="page", instance="a"),
                ]},
                {"eval_time": "4m", "alertname": "SwitchyardBudgetExhausted", "exp_alerts": [
                    alert("SwitchyardBudgetExhausted", "Tenant acme has used up its budget",
                          severity="ticket", tenant="acme"),
                ]},
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                # a: 120 cut off a minute (2/s), most of them too slow to send; b: 6 a minute, and any number of
                # connections that never sent a request (probes, scanners), which the alert leaves out.
                {"series": 'switchyard_connections_cut_total{instance="a",reason="request_too_slow"}', "values": "0+100x30"},
                {"series": 'switchyard_connections_cut_total{instance="a",reason="not_reading"}', "values": "0+20x30"},
                {"series": 'switchyard_connections_cut_total{instance="b",reason="request_too_slow"}', "values": "0+6x30"},
                {"series": 'switchyard_connections_cut_total{instance="b",reason="no_request"}', "values": "0+600x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "8m", "alertname": "SwitchyardSlowClients", "exp_alerts": []},  # not for 10m yet
                {"eval_time": "20m", "alertname": "SwitchyardSlowClients", "exp_alerts": [
                    alert("SwitchyardSlowClients", "Switchyard replica a keeps cutting off slow clients",
                          severity="ticket", instance="a"),
                ]},
            ],
        },
    ]
    test_file = tmp_path / "alerts_test.yaml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": cases}))
    result = subprocess.run([tool("promtool"), "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ----- dashboard and collector config ----------------------------------------------------------------------------


def test_the_collector_example_wires_an_otlp_http_receiver_into_a_traces_pipeline():
    config = yaml.safe_load((KIT / "otel-collector.yaml").read_text())
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    pipeline = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert pipeline[kind] and set(pipeline[kind]) <= set(config[kind])


def traffic(gateway, openai_upstream) -> int:
    sdk = openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0, timeout=30)
    for prompt in ("a b", "c d e"):
        sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": prompt}])
    list(sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "s"}], stream=True))
    openai_upstream.set_fault("status", status=503, times=1)
    sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "retry"}])
    sdk.embeddings.create(model="echo", input="vector")
    return 5


@pytest.fixture
def busy_gateway(openai_upstream, start_gateway):
    price = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
    config = {
        "targets": {
            "llama": {"adapter": "openai", "base_url": openai_upstream.base_url, "model": "m", "price": price},
            "echo": {"adapter": "echo"},
        },
        "tenants": {"acme": {"keys": [KEY_HASH], "models": ["*"]}},
    }
    policy = {"version": 1, "routes": [{"name": "chat", "when": {"model": "chat"}, "send": ["llama"],
                                        "retry": {"attempts": 2, "backoff_s": 0.01}}]}
    gateway = start_gateway(config, policies={"policy.yaml": policy})
    return gateway, traffic(gateway, openai_upstream)


def test_every_dashboard_query_names_only_metrics_the_gateway_exports(busy_gateway):
    gateway, _ = busy_gateway
    exported = scrape(gateway).series_names
    queries = dashboard_queries()
    assert len(queries) >= 20
    used = set()
    for query in queries:
        names = set(re.findall(r"\bswitchyard_[a-z_]+", query))
        assert names, query
        assert names <= exported, f"{query}: {names - exported} not exported"
        used |= names
    # The dashboard shows traffic, errors, latency, TTFT, cost, fallbacks, rate limits and safety.
    for metric in ("requests_total", "request_duration_seconds_bucket", "time_to_first_token_seconds_bucket",
                   "cost_usd_total", "fallbacks_total", "ratelimit_rejections_total", "safety_events_total"):
        assert f"switchyard_{metric}" in used


# ----- a real Prometheus -----------------------------------------------------------------------------------------


class Prometheus:
    def __init__(self, workdir: Path, scrape_port: int) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "switchyard", "static_configs": [{"targets": [f"127.0.0.1:{scrape_port}"]}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [tool("prometheus"), f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with _DIRECT.open(url, timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:  # a bad query is a 400 with a JSON body
            return json.loads(error.read())
        except OSError:
            return {"status": "down"}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def prometheus(busy_gateway, tmp_path):
    gateway, _ = busy_gateway
    server = Prometheus(tmp_path, gateway.port)
    yield server
    server.stop()


def test_prometheus_scrapes_the_gateway_and_runs_the_rules_and_dashboard_queries(busy_gateway, prometheus):
    gateway, sent = busy_gateway

    def requests_seen() -> float | None:
        reply = prometheus.api("query", query='sum(switchyard_requests_total{job="switchyard"})')
        result = reply.get("data", {}).get("result", []) if reply.get("status") == "success" else []
        return float(result[0]["value"][1]) if result else None

    assert wait_until(requests_seen, timeout=30, interval=0.2) == sent
    cost = prometheus.api("query", query='sum by (route, tenant) (switchyard_cost_usd_total)')["data"]["result"]
    assert [(r["metric"]["route"], r["metric"]["tenant"]) for r in cost if float(r["value"][1]) > 0] == [("chat", "acme")]

    def rules_evaluated() -> list[dict] | None:
        groups = prometheus.api("rules").get("data", {}).get("groups", [])
        loaded = [rule for group in groups for rule in group["rules"]]
        return loaded if loaded and all(rule.get("health") == "ok" for rule in loaded) else None

    assert len(wait_until(rules_evaluated, timeout=30, interval=0.2)) == len(rules())
    for query in dashboard_queries():
        reply = prometheus.api("query", query=concrete(query))
        assert reply["status"] == "success", (query, reply)
    # Traffic while Prometheus watches shows up in the dashboard's first panel, requests/s by route.
    sdk = openai.OpenAI(base_url=gateway.openai_base_url, api_key=KEY, max_retries=0, timeout=30)
    sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "more"}])
    sdk.embeddings.create(model="echo", input="more")

    def routes_with_traffic() -> set[str] | None:
        reply = prometheus.api("query", query=concrete(dashboard_queries()[0]))
        routes = {r["metric"]["route"] for r in reply.get("data", {}).get("result", []) if float(r["value"][1]) > 0}
        return routes if routes == {"chat", "echo"} else None

    wait_until(routes_with_traffic, timeout=30, interval=0.2)
