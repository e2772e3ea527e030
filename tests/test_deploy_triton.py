"""The deployment against the real tritonserver 2.51.0 bundled in nvidia-pytriton: started with the
flags docker-compose.yml gives it, on a tiny Python-backend repository bound to 127.0.0.1. Checks
the NGC tag, the health endpoint, the locked repository API, and that the dashboard and the
autoscaler ask only for metrics this server exposes, in valid PromQL (promtool)."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(sys.prefix) / "lib/python3.11/site-packages"
SERVER_DIR = SITE / "pytriton/tritonserver"
ADMIN_KEY = "test-admin-key"
DASHBOARD = ROOT / "deploy/grafana/dashboards/triton.json"
ADAPTER = ROOT / "deploy/k8s/prometheus-adapter/config.yaml"
PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                   "group_right", "bool", "offset", "inf", "nan"}

IDENTITY_CONFIG = """
name: "identity"
backend: "python"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
dynamic_batching { max_queue_delay_microseconds: 100 }
instance_group [ { kind: KIND_CPU count: 1 } ]
"""
IDENTITY_MODEL = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compose_triton_args():
    """docker-compose.yml's tritonserver flags, secrets filled in as Compose would from .env."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["triton"]["command"]
    assert command[0] == "tritonserver"
    fill = {"TRITON_ADMIN_KEY": ADMIN_KEY}
    return [re.sub(r"\$\{(\w+)[^}]*\}", lambda m: fill[m[1]], a) for a in command[1:]]


def http(url, data=None, headers=None, timeout=10):
    request = urllib.request.Request(url, data=data, headers=headers or {},
                                     method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return None, ""


@pytest.fixture(scope="module")
def triton():
    """The bundled server with compose's flags on a one-model repository; stopped by PID."""
    tmp = Path(tempfile.mkdtemp(prefix="tritonforge-deploy-"))
    backend = tmp / "backends/python"
    backend.mkdir(parents=True)
    for source in (SERVER_DIR / "backends/python/libtriton_python.so",
                   SERVER_DIR / "backends/python/triton_python_backend_utils.py",
                   SERVER_DIR / "python_backend_stubs/3.11/triton_python_backend_stub"):
        shutil.copy2(source, backend / source.name)
    model = tmp / "repository/identity"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(IDENTITY_CONFIG)
    (model / "1/model.py").write_text(IDENTITY_MODEL)

    ports = {name: free_port() for name in ("http", "grpc", "metrics")}
    args = [a for a in compose_triton_args() if not a.startswith("--model-repository=")]
    argv = [str(SERVER_DIR / "bin/tritonserver"), f"--model-repository={tmp / 'repository'}",
            *args, f"--backend-directory={tmp / 'backends'}",
            # The NGC image has the cache libraries at the default /opt/tritonserver/caches; the wheel here.
            f"--cache-directory={SERVER_DIR / 'caches'}",
            *(f"--{name}-address=127.0.0.1" for name in ports),
            *(f"--{name}-port={port}" for name, port in ports.items())]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               LD_LIBRARY_PATH=str(SITE / "nvidia_pytriton.libs"), HOME=str(tmp))
    log = open(tmp / "tritonserver.log", "w")
    process = subprocess.Popen(argv, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{ports['http']}"
    try:
        deadline = time.monotonic() + 90
        while http(f"{base}/v2/health/ready", timeout=2)[0] != 200:
            assert process.poll() is None, (tmp / "tritonserver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "tritonserver not ready in 90 s"
            time.sleep(0.5)
        body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [2, 4], "datatype": "FP32",
                                       "data": list(range(8))}]}).encode()
        for _ in range(3):
            status, text = http(f"{base}/v2/models/identity/infer", body)
            assert status == 200, text
        metrics = http(f"http://127.0.0.1:{ports['metrics']}/metrics")[1]
        yield {"base": base, "metrics": metrics}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def exposed(triton):
    names = {re.match(r"[A-Za-z_:][\w:]*", line)[0]
             for line in triton["metrics"].splitlines() if line and not line.startswith("#")}
    assert "nv_inference_request_success" in names
    return names


def metric_names(expr):
    """Metric names a PromQL expression selects (label matchers, ranges, groupings dropped)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    return {m[0] for m in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*(?!\w*\s*\()", s)
            if m[0].lower() not in PROMQL_KEYWORDS}


def dashboard_queries():
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def adapter_queries():
    rules = yaml.safe_load(ADAPTER.read_text())["rules"]
    return [r["metricsQuery"] for r in rules], [r["seriesQuery"] for r in rules]


def as_promql(expr):
    """A Grafana or adapter template query with its variables set, as Prometheus receives it."""
    for variable, value in {"$__rate_interval": "1m", "$model": ".*",
                            "<<.LabelMatchers>>": 'namespace="tritonforge",pod="triton-0"',
                            "<<.GroupBy>>": "pod", "<<.Series>>": "nv_inference_count"}.items():
        expr = expr.replace(variable, value)
    return expr


def promtool_check_rules(exprs, tmp_path):
    rules = {"groups": [{"name": "tritonforge", "rules": [
        {"record": f"tritonforge:query_{i}", "expr": as_promql(e)} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    assert shutil.which("promtool"), "promtool missing: run deploy/setup-tools.sh"
    return subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)


def test_ngc_image_tag_is_the_release_of_the_bundled_server(triton):
    dockerfile = (ROOT / "deploy/triton/Dockerfile").read_text()
    year, month = map(int, re.search(
        r"nvcr\.io/nvidia/tritonserver:(\d\d)\.(\d\d)-py3", dockerfile).groups())
    # NGC 23.01 shipped Triton 2.30.0; one minor version per monthly release since.
    expected = f"2.{30 + (year - 23) * 12 + month - 1}.0"
    assert json.loads(http(f"{triton['base']}/v2")[1])["version"] == expected


def test_the_health_check_path_answers_ready(triton):
    assert http(f"{triton['base']}/v2/health/ready")[0] == 200
    assert http(f"{triton['base']}/v2/health/live")[0] == 200


def test_repository_api_refuses_requests_without_the_admin_key(triton):
    status, text = http(f"{triton['base']}/v2/repository/index", b"{}")
    assert status in (401, 403), (status, text)
    status, _ = http(f"{triton['base']}/v2/repository/index", b"{}",
                     {"triton-admin-key": "wrong"})
    assert status in (401, 403)


def test_repository_api_answers_with_the_admin_key(triton):
    status, text = http(f"{triton['base']}/v2/repository/index", b"{}",
                        {"triton-admin-key": ADMIN_KEY})
    assert status == 200, text
    assert [m["name"] for m in json.loads(text)] == ["identity"]


def test_inference_needs_no_admin_key(triton):
    assert http(f"{triton['base']}/v2/models/identity")[0] == 200


def test_dashboard_has_the_panels_operators_need():
    titles = " ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for needed in ("requests/s", "p50", "p99", "queue time", "batch size", "failures"):
        assert needed in titles


def test_every_dashboard_query_names_only_metrics_the_server_exposes(exposed):
    dashboard = json.loads(DASHBOARD.read_text())
    variables = [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    named = [metric_names(e) for e in dashboard_queries()]
    named += [{re.match(r"label_values\((\w+)", v)[1]} for v in variables]
    assert all(named), "a query names no metric"
    assert set().union(*named) - exposed == set()


def test_every_dashboard_query_is_valid_promql(tmp_path):
    result = promtool_check_rules(dashboard_queries(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_refuses_a_broken_query(tmp_path):
    assert promtool_check_rules(["sum by (model) (rate(nv_inference_count[1m])"],
                                tmp_path).returncode != 0


def test_autoscaler_rule_reads_metrics_the_server_exposes_in_valid_promql(exposed, tmp_path):
    metrics_queries, series_queries = adapter_queries()
    named = [metric_names(q) for q in metrics_queries + series_queries]
    assert all(named) and set().union(*named) - exposed == set()
    result = promtool_check_rules(metrics_queries, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
