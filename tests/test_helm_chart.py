"""The Helm chart, rendered by Helm's own engine (helm-python-sdk binds Helm's Go SDK: no binary, no cluster).

Every rendered manifest is validated against the Kubernetes API schemas (kubernetes-validate, offline), and what
the chart promises the gateway — probe paths, ports, mounted config and policy paths, environment from Secrets —
is checked against the real gateway: `switchyard config check` on the rendered files laid out where the pod mounts
them, and a gateway process started from them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import openai
import pytest
import yaml
from fakes import reply_text
from fakes.gateway_process import GatewayProcess
from fakes.keys import make_key
from fakes.network import free_port

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "switchyard"
EXAMPLE_VALUES = ROOT / "helm" / "examples" / "closed-primary-selfhosted-fallback.yaml"
RELEASE, NAMESPACE = "sy", "llm"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest whose schemas are bundled.
KUBE_VERSIONS = ("1.27", kubernetes_validate.latest_version())
CUSTOM_RESOURCES = {("monitoring.coreos.com/v1", "ServiceMonitor")}  # CRDs: checked field by field below

BASE_KINDS = Counter({"ConfigMap": 2, "Deployment": 1, "Service": 1, "ServiceAccount": 1})
COMBINATIONS: dict[str, tuple[dict[str, Any], Counter[str]]] = {
    "defaults": ({}, BASE_KINDS + Counter({"HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1})),
    "external redis": (
        {"redis": {"url": "redis://redis-master.infra.svc:6379/0"}},
        BASE_KINDS + Counter({"HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1}),
    ),
    "in-chart redis behind network policies": (
        {
            "redis": {"inChart": {"enabled": True}},
            "networkPolicy": {
                "enabled": True,
                "ingressFrom": [{"namespaceSelector": {"matchLabels": {"team": "apps"}}}],
                "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443, "protocol": "TCP"}]}],
            },
        },
        BASE_KINDS
        + Counter(
            {"HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1, "Deployment": 1, "Service": 1, "NetworkPolicy": 2}
        ),
    ),
    "service monitor": (
        {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
        BASE_KINDS + Counter({"HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1, "ServiceMonitor": 1}),
    ),
    "existing secret and chart secret": (
        {"secrets": {"existingSecret": "llm-keys", "env": {"OPENAI_API_KEY": "sk-test"}}},
        BASE_KINDS + Counter({"HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1, "Secret": 1}),
    ),
    "autoscaling and disruption budget off, 4 workers": (
        {
            "autoscaling": {"enabled": False},
            "podDisruptionBudget": {"enabled": False},
            "replicaCount": 3,
            "gateway": {"workers": 4},
        },
        BASE_KINDS,
    ),
    "ingress with tls, image by digest": (
        {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "annotations": {"nginx.ingress.kubernetes.io/proxy-buffering": "off"},
                "hosts": [{"host": "llm.example.com", "paths": [{"path": "/v1", "pathType": "Prefix"}]}],
                "tls": [{"secretName": "llm-tls", "hosts": ["llm.example.com"]}],
            },
            "image": {"digest": "sha256:" + "ab" * 32},
        },
        BASE_KINDS + Counter({"HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1, "Ingress": 1}),
    ),
    "README example: closed primary, self-hosted fallback": (
        yaml.safe_load(EXAMPLE_VALUES.read_text()),
        BASE_KINDS + Counter({"HorizontalPodAutoscaler": 1, "PodDisruptionBudget": 1, "ServiceMonitor": 1}),
    ),
}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifests an install with these values would create (NOTES.txt aside)."""
    rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [
        doc
        for path, text in sorted(rendered.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def one(manifests: list[dict[str, Any]], kind: str, component: str = "gateway") -> dict[str, Any]:
    found = [
        m
        for m in manifests
        if m["kind"] == kind
        and m["metadata"].get("labels", {}).get("app.kubernetes.io/component", component) == component
    ]
    assert len(found) == 1, f"expected one {component} {kind}, got {len(found)}"
    return found[0]


def gateway_container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def config_map(manifests: list[dict[str, Any]], name: str) -> dict[str, str]:
    (found,) = [m for m in manifests if m["kind"] == "ConfigMap" and m["metadata"]["name"] == name]
    return found.get("data") or {}


def lay_out_pod_files(manifests: list[dict[str, Any]], root: Path) -> Path:
    """Writes every ConfigMap the gateway mounts under `root` + its mountPath; returns the --config path there."""
    deployment = one(manifests, "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    container = gateway_container(manifests)
    for mount in container["volumeMounts"]:
        assert "subPath" not in mount, "a subPath mount never sees ConfigMap updates"
        source = volumes[mount["name"]].get("configMap")
        if source is None:
            continue
        directory = root / mount["mountPath"].lstrip("/")
        directory.mkdir(parents=True)
        for key, text in config_map(manifests, source["name"]).items():
            (directory / key).write_text(text)
    args = container["args"]
    assert args[:2] == ["serve", "--config"] and len(args) == 3, args
    return root / args[2].lstrip("/")


def pod_environment(manifests: list[dict[str, Any]], existing_secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The gateway container's environment: plain `env` values and every Secret it takes with envFrom."""
    container = gateway_container(manifests)
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    chart_secrets = {m["metadata"]["name"]: m["stringData"] for m in manifests if m["kind"] == "Secret"}
    for source in container.get("envFrom", []):
        name = source["secretRef"]["name"]
        env.update(chart_secrets[name] if name in chart_secrets else existing_secrets[name])
    return env


def gateway_config(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(config_map(manifests, f"{RELEASE}-switchyard-config")["config.yaml"])


# ----- every combination: lint, render, validate against the Kubernetes schemas --------------------------------------


@pytest.mark.parametrize("combination", list(COMBINATIONS))
def test_chart_lints_renders_and_validates_against_kubernetes_schemas(chart, combination):
    values, expected_kinds = COMBINATIONS[combination]
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    assert [m for m in report["messages"] if m["severity"] >= 2] == [] and report["errors"] == []

    manifests = render(chart, values)
    assert Counter(m["kind"] for m in manifests) == expected_kinds
    for manifest in manifests:
        if (manifest["apiVersion"], manifest["kind"]) in CUSTOM_RESOURCES:
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)


def test_schema_validation_itself_catches_a_broken_manifest(chart):
    """The validation above can fail: a Deployment with a misspelt field does not pass."""
    deployment = one(render(chart, {}), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {
        "httpGet": {"path": "/readyz", "port": "http"}
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicas": 3}, "additional properties 'replicas' not allowed"),
        ({"gateway": {"workers": 0}}, "/gateway/workers"),
        ({"gateway": {"drainTimeoutSeconds": "60s"}}, "/gateway/drainTimeoutSeconds"),
        ({"config": {"server": {"port": 9000}}}, "invalid propertyName 'port'"),
        ({"config": {"policies": ["a.yaml"]}}, "invalid propertyName 'policies'"),
        ({"policies": {"default.yaml": "version: 1"}}, "invalid propertyName 'default.yaml'"),
        ({"redis": {"url": "http://redis:6379"}}, "/redis/url"),
        ({"secrets": {"env": {"NOT-A-VARIABLE": "x"}}}, "invalid propertyName 'NOT-A-VARIABLE'"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"serviceMonitor": {"interval": "often"}}, "/serviceMonitor/interval"),
    ],
)
def test_bad_values_fail_at_install_time(chart, values, complaint):
    with pytest.raises(helm.HelmValuesError, match=re.escape(complaint)):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"redis": {"url": "redis://r:6379/0", "inChart": {"enabled": True}}}, "either redis.url"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "maxReplicas must be at least"),
    ],
)
def test_contradictory_values_fail_at_install_time(chart, values, complaint):
    with pytest.raises(helm.HelmRenderError, match=complaint):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


# ----- what the chart promises the gateway ---------------------------------------------------------------------------


def test_readme_example_passes_config_check_and_policy_tests_where_the_pod_mounts_it(chart, tmp_path):
    manifests = render(chart, yaml.safe_load(EXAMPLE_VALUES.read_text()))
    config_path = lay_out_pod_files(manifests, tmp_path)
    key_hash = make_key("support-bot")[1]
    secret = {"OPENAI_API_KEY": "sk-test", "SUPPORT_BOT_KEY_HASH": key_hash, "ADMIN_KEY_HASH": make_key("admin")[1]}
    env = pod_environment(manifests, {"switchyard-keys": secret})
    checked = switchyard("config", "check", str(config_path), env=env)
    assert checked.returncode == 0, checked.stderr
    assert "OK (2 targets, 1 tenants, 1 routes from 1 policy files)" in checked.stdout
    tested = switchyard("policy", "test", "--config", str(config_path), env=env)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Without the Secret's variables the same files are rejected: the config really reads them from there.
    missing = switchyard("config", "check", str(config_path), env={})
    assert missing.returncode == 1
    assert re.search(rf"environment variable ({'|'.join(secret)}) is not set", missing.stderr), missing.stderr


def switchyard(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_gateway_started_from_the_rendered_files_serves_the_probes_and_requests(chart, tmp_path, openai_upstream):
    """Probe paths and ports, mounts, Secret → env → config: a real gateway run from exactly what the pod gets."""
    upstream_key = "sk-upstream-secret"
    openai_upstream.api_key = upstream_key
    client_key, client_hash = make_key("app")
    values = {
        "gateway": {"drainGraceSeconds": 0},  # the stop at the end needs no grace period here
        "serviceMonitor": {"enabled": True},
        "config": {
            "targets": {
                "primary": {
                    "adapter": "openai",
                    "base_url": "${PRIMARY_URL}",
                    "model": "m",
                    "api_key": "${PRIMARY_KEY}",
                }
            },
            "tenants": {"app": {"keys": ["${APP_KEY_HASH}"], "models": ["chat"]}},
        },
        "policies": {
            "10-chat": {"version": 1, "routes": [{"name": "chat", "when": {"model": "chat"}, "send": ["primary"]}]}
        },
        "secrets": {
            "env": {"PRIMARY_URL": openai_upstream.base_url, "PRIMARY_KEY": upstream_key, "APP_KEY_HASH": client_hash}
        },
    }
    manifests = render(chart, values)
    config_path = lay_out_pod_files(manifests, tmp_path / "pod")
    config = gateway_config(manifests)
    container = gateway_container(manifests)
    (port,) = container["ports"]
    assert (config["server"]["host"], config["server"]["port"]) == ("0.0.0.0", port["containerPort"])
    service = one(manifests, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]

    # The gateway binds the config's 0.0.0.0:8080 in the pod; here, a free loopback port instead.
    gateway = GatewayProcess(tmp_path, config_path, free_port(), env=pod_environment(manifests, {}))
    try:
        gateway.start()
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] == port["name"]
            assert gateway.probe(container[probe]["httpGet"]["path"]) == 200, probe
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # the one that fails while draining
        (scrape,) = one(manifests, "ServiceMonitor")["spec"]["endpoints"]
        assert scrape["port"] == service["spec"]["ports"][0]["name"]
        status, _, metrics = gateway.http_get(scrape["path"])
        assert status == 200 and b"switchyard_" in metrics
        sdk = openai.OpenAI(base_url=gateway.openai_base_url, api_key=client_key, max_retries=0, timeout=10)
        reply = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == reply_text("openai-fake", "m", "hi")
    finally:
        gateway.stop()
    assert gateway.returncode == 0


def test_policy_changes_reach_running_pods_while_config_and_secret_changes_roll_them(chart):
    base = {"policies": {"chat": "version: 1\nroutes: []\n"}, "secrets": {"env": {"K": "1"}}}

    def pod_template(values: dict[str, Any]) -> dict[str, Any]:
        return one(render(chart, values), "Deployment")["spec"]["template"]

    same = pod_template(base)
    assert pod_template({**base, "policies": {"chat": "version: 1\nroutes: [{name: x, when: {}, deny: no}]\n"}}) == same
    for changed in ({**base, "config": {"server": {"max_body_bytes": 8192}}}, {**base, "secrets": {"env": {"K": "2"}}}):
        assert pod_template(changed)["metadata"]["annotations"] != same["metadata"]["annotations"]


def test_policy_files_are_listed_in_name_order_from_their_mounted_directory(chart, tmp_path):
    policy = {"version": 1, "routes": [{"name": "r", "when": {"model": "echo"}, "send": ["echo"]}]}
    manifests = render(chart, {"policies": {"20-late": policy, "10-early": yaml.safe_dump(policy)}})
    config_path = lay_out_pod_files(manifests, tmp_path)
    listed = [(config_path.parent / p).resolve() for p in gateway_config(manifests)["policies"]]
    assert [p.name for p in listed] == ["10-early.yaml", "20-late.yaml"]
    assert all(yaml.safe_load(p.read_text()) == policy for p in listed)


def test_redis_url_in_the_config_points_at_the_chosen_redis(chart):
    external = "redis://redis-master.infra.svc:6379/0"
    assert gateway_config(render(chart, {"redis": {"url": external}}))["state"]["redis_url"] == external
    assert "redis_url" not in gateway_config(render(chart, {}))["state"]

    manifests = render(chart, {"redis": {"inChart": {"enabled": True}}})
    redis_service = one(manifests, "Service", component="redis")
    redis_pod = one(manifests, "Deployment", component="redis")["spec"]["template"]
    url = gateway_config(manifests)["state"]["redis_url"]
    assert url == f"redis://{redis_service['metadata']['name']}:{redis_service['spec']['ports'][0]['port']}/0"
    assert redis_service["spec"]["selector"].items() <= redis_pod["metadata"]["labels"].items()
    assert (
        not redis_service["spec"]["selector"].items()
        <= one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )


def test_drain_settings_reach_the_gateway_and_the_kubelet_waits_for_them(chart):
    manifests = render(chart, {"gateway": {"drainGraceSeconds": 7, "drainTimeoutSeconds": 120}})
    server = gateway_config(manifests)["server"]
    assert (server["drain_grace_s"], server["drain_timeout_s"]) == (7, 120)
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > 7 + 120, "SIGKILL must not come before the drain deadline"
    assert "lifecycle" not in pod["containers"][0], "the gateway's own grace period replaces a preStop sleep"


def test_workers_option_reaches_the_config(chart):
    assert gateway_config(render(chart, {}))["server"]["workers"] == 1
    assert gateway_config(render(chart, {"gateway": {"workers": 3}}))["server"]["workers"] == 3


def test_pods_run_locked_down_by_default(chart):
    manifests = render(chart, {"redis": {"inChart": {"enabled": True}}})
    for component in ("gateway", "redis"):
        pod = one(manifests, "Deployment", component)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        assert pod["automountServiceAccountToken"] is False
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert {"requests", "limits"} <= container["resources"].keys()
    gateway_pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert {c["topologyKey"] for c in gateway_pod["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }


def test_service_monitor_scrapes_metrics_on_the_gateway_service_port(chart):
    manifests = render(chart, {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}})
    monitor, service = one(manifests, "ServiceMonitor"), one(manifests, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}  # the live gateway test scrapes it
    with pytest.raises(helm.HelmRenderError, match="config.observability.metrics is false"):
        render(chart, {"serviceMonitor": {"enabled": True}, "config": {"observability": {"metrics": False}}})
    assert "authorization" not in endpoint


def test_service_monitor_sends_the_metrics_key_when_metrics_need_one(chart):
    keyed = {"observability": {"metrics_keys": ["sha256:" + "ab" * 32]}}
    manifests = render(chart, {"serviceMonitor": {"enabled": True, "keySecret": {"name": "scraper", "key": "token"}},
                               "config": keyed})
    (endpoint,) = one(manifests, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": "scraper", "key": "token"}}
    with pytest.raises(helm.HelmRenderError, match="serviceMonitor.keySecret must name the Secret"):
        render(chart, {"serviceMonitor": {"enabled": True}, "config": keyed})
    with pytest.raises(helm.HelmRenderError, match="serviceMonitor.keySecret.key"):
        render(chart, {"serviceMonitor": {"enabled": True, "keySecret": {"name": "scraper"}}, "config": keyed})


def test_notes_tell_how_to_call_the_gateway(chart):
    notes = chart.render(yaml.safe_load(EXAMPLE_VALUES.read_text()), name=RELEASE, namespace=NAMESPACE)[
        "switchyard/templates/NOTES.txt"
    ]
    assert f"http://{RELEASE}-switchyard.{NAMESPACE}.svc:8080/v1" in notes
    assert '"model": "chat"' in notes and "port-forward service/sy-switchyard 8080:8080" in notes
    assert "No tenant is configured" not in notes and "no Redis is configured" not in notes
    bare = chart.render({}, name=RELEASE, namespace=NAMESPACE)["switchyard/templates/NOTES.txt"]
    assert "No tenant is configured" in bare and "no Redis is configured" in bare


def test_readme_shows_the_example_values_as_tested_here():
    assert EXAMPLE_VALUES.read_text() in (ROOT / "README.md").read_text()
