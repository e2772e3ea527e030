"""docker-compose.yml and its CPU override: the Compose specification's schema, mounts, secrets,
Prometheus and Grafana wiring, Locust. Static checks with real validators (no Docker engine here)."""
import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.cpu.yml"]
SECRET_WORDS = ("PASSWORD", "KEY", "SECRET", "TOKEN", "USER")
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")


class ComposeLoader(yaml.SafeLoader):
    """YAML as Compose reads it: `!reset` and `!override` are merge directives on a plain value."""


for _tag in ("!reset", "!override"):
    ComposeLoader.add_constructor(
        _tag,
        lambda loader, node: (
            loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
            else loader.construct_mapping(node) if isinstance(node, yaml.MappingNode)
            else loader.construct_scalar(node)),
    )


def load_compose(name):
    return yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)


@pytest.fixture(scope="module")
def compose():
    return load_compose("docker-compose.yml")


def bind_mounts(service):
    """(host source, container target, read_only) for each bind mount of a service."""
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            if source.startswith((".", "/")):
                yield source, target, "ro" in (mode[0].split(",") if mode else [])
        elif volume.get("type") == "bind":
            yield volume["source"], volume["target"], bool(volume.get("read_only"))


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_validates_against_the_compose_specification_schema(name):
    schema_file = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(load_compose(name))]
    assert errors == []


def test_base_compose_file_also_passes_the_check_jsonschema_cli():
    result = subprocess.run(
        [str(ROOT / ".venv/bin/check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
         "docker-compose.yml"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_bind_mount_source_exists_after_the_build(compose):
    # model_repository/ is the build's output folder; it is committed with only its README.
    missing = [f"{name}: {source}" for name, service in compose["services"].items()
               for source, _, _ in bind_mounts(service) if not (ROOT / source).exists()]
    assert missing == []


def test_every_build_context_and_dockerfile_exists(compose):
    builds = [s["build"] for s in compose["services"].values() if "build" in s]
    assert builds
    for build in builds:
        context = ROOT / build["context"]
        assert context.is_dir(), build
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), build


def test_triton_mounts_the_model_repository_read_only_where_it_serves_from(compose):
    triton = compose["services"]["triton"]
    mounts = {source.rstrip("/"): (target, ro) for source, target, ro in bind_mounts(triton)}
    assert mounts["./model_repository"] == ("/models", True)
    assert "--model-repository=/models" in triton["command"]


def test_triton_reserves_a_gpu_and_the_cpu_override_releases_it(compose):
    devices = compose["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    override_text = (ROOT / "docker-compose.cpu.yml").read_text()
    override = load_compose("docker-compose.cpu.yml")
    assert override["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"] == []
    # Without !reset Compose would merge the lists and keep the GPU reservation.
    assert re.search(r"devices:\s*!reset\s*\[\]", override_text)


def test_triton_health_check_asks_the_ready_endpoint_on_the_http_port(compose):
    test = " ".join(compose["services"]["triton"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/v2/health/ready" in test


def test_published_ports_bind_to_loopback_unless_the_env_file_says_otherwise(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host = port.rsplit(":", 2)[0]
            default = INTERPOLATION.fullmatch(host)
            assert host == "127.0.0.1" or (default and default["arg"] == "127.0.0.1"), (name, port)


def test_secrets_have_no_default_and_must_come_from_the_env_file():
    text = (ROOT / "docker-compose.yml").read_text()
    secrets = [m for m in INTERPOLATION.finditer(text)
               if any(word in m["name"] for word in SECRET_WORDS)]
    assert {m["name"] for m in secrets} >= {"TRITON_ADMIN_KEY", "GRAFANA_ADMIN_PASSWORD"}
    assert all(m["op"] == ":?" for m in secrets), [m.group(0) for m in secrets if m["op"] != ":?"]


def test_env_example_names_every_required_variable_and_sets_no_secret():
    required = {m["name"] for m in INTERPOLATION.finditer((ROOT / "docker-compose.yml").read_text())
                if m["op"] == ":?"}
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert required <= set(example)
    assert all(example[name] == "" for name in required)


def test_env_file_is_ignored_by_git():
    result = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, timeout=30)
    assert result.returncode == 0


def test_grafana_admin_credentials_come_from_the_env_file(compose):
    env = compose["services"]["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


@pytest.mark.parametrize("config", ["deploy/prometheus/prometheus.yml"])
def test_prometheus_config_passes_promtool(config):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run deploy/setup-tools.sh"
    result = subprocess.run([promtool, "check", "config", config], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_triton_metrics_port_with_the_config_compose_mounts(compose):
    mounts = {target: source for source, target, _ in
              bind_mounts(compose["services"]["prometheus"])}
    config = yaml.safe_load((ROOT / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    targets = [t for job in config["scrape_configs"] for sc in job.get("static_configs", [])
               for t in sc["targets"]]
    # Triton's default metrics port, on the compose network under the service's name.
    assert "triton:8002" in targets
    assert not any(a.startswith("--metrics-port") for a in compose["services"]["triton"]["command"])


def test_grafana_provisions_the_prometheus_data_source_and_the_dashboard_folder(compose):
    mounts = {target: ROOT / source for source, target, _ in
              bind_mounts(compose["services"]["grafana"])}
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    assert [d["url"] for d in datasources["datasources"] if d["type"] == "prometheus"] == [
        "http://prometheus:9090"]
    providers = yaml.safe_load((provisioning / "dashboards/tritonforge.yml").read_text())
    paths = [p["options"]["path"] for p in providers["providers"]]
    assert paths == ["/var/lib/grafana/dashboards"]
    dashboards = sorted(mounts[paths[0]].glob("*.json"))
    assert [json.loads(d.read_text())["uid"] for d in dashboards] == ["tritonforge-triton"]


@pytest.mark.parametrize("service", ["locust-master", "locust-worker"])
def test_locust_runs_the_mounted_loadtests_locustfile(compose, service):
    spec = compose["services"][service]
    command = spec["command"]
    locustfile = command[command.index("-f") + 1]
    # The container path must map, through a bind mount, to loadtests/locustfile.py here.
    host_paths = [ROOT / source / Path(locustfile).relative_to(target)
                  for source, target, _ in bind_mounts(spec)
                  if Path(locustfile).is_relative_to(target)]
    assert host_paths == [ROOT / "loadtests/locustfile.py"]
    assert "--master" in command or command[command.index("--master-host") + 1] == "locust-master"


def test_triton_gets_longer_to_stop_than_a_poll_period_plus_its_drain_timeout(compose):
    triton = compose["services"]["triton"]
    args = dict(a.split("=", 1) for a in triton["command"] if "=" in a)
    grace = re.fullmatch(r"(\d+)s", triton["stop_grace_period"])
    assert args["--model-control-mode"] == "poll"
    needed = int(args["--repository-poll-secs"]) + int(args["--exit-timeout-secs"])
    assert int(grace[1]) > needed


def test_the_cpu_override_runs_the_base_command_with_the_cpu_configs(compose):
    cpu = load_compose("docker-compose.cpu.yml")["services"]["triton"]["command"]
    base = compose["services"]["triton"]["command"]
    assert "--model-config-name=gpu" in base and "--model-config-name=cpu" in cpu
    assert [a for a in cpu if a != "--model-config-name=cpu"] == [a for a in base if a != "--model-config-name=gpu"]
