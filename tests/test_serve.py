"""serve-repo on tiny models of each platform: answers, batching, instance kinds, start and stop."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from fixtures_serving import WEIGHTS, make_config, wait_for, write_model
from tritonforge.serving.server import ServeError, Server, serve


def _infer(server, model, name, array, datatype="FP32", protocol="grpc"):
    module = grpcclient if protocol == "grpc" else httpclient
    client = server.grpc_client() if protocol == "grpc" else server.http_client()
    tensor = module.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return client.infer(model, [tensor])


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("model,input_name,output_name", [
    ("onnx_linear", "input", "output"),
    ("torch_linear", "INPUT__0", "OUTPUT__0"),
    ("tf_linear", "features", "scores"),
])
def test_each_backend_answers_what_its_framework_computes(tiny_server, model, input_name, output_name, protocol):
    x = np.random.default_rng(1).random((3, 4), dtype=np.float32)
    result = _infer(tiny_server, model, input_name, x, protocol=protocol)
    np.testing.assert_allclose(result.as_numpy(output_name), x @ WEIGHTS, rtol=1e-5, atol=1e-6)


def test_string_tensors_travel_as_bytes_both_ways(tiny_server):
    text = np.array([["a"], ["héllo"], [""]], dtype=object)
    wire = np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(text)
    result = _infer(tiny_server, "onnx_strings", "text", wire, datatype="BYTES")
    assert result.as_numpy("same").tolist() == wire.tolist()


def test_kind_gpu_is_served_as_kind_cpu_and_the_file_is_untouched(tiny_server, tiny_repo):
    path = tiny_repo / "onnx_linear" / "config.pbtxt"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    assert "KIND_GPU" in path.read_text()
    served = tiny_server.grpc_client().get_model_config("onnx_linear").config
    assert [g.kind for g in served.instance_group] == [grpcclient.model_config_pb2.ModelInstanceGroup.KIND_CPU]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_server_listens_on_loopback_only(tiny_server):
    assert tiny_server.address == "127.0.0.1"
    ports = {tiny_server.http_port, tiny_server.grpc_port, tiny_server.metrics_port}
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) in ports:  # LISTEN
                listening.add((address, int(port, 16)))
    assert {p for _, p in listening} == ports
    # gRPC listens on the IPv4-mapped IPv6 form of 127.0.0.1.
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}
    assert all(address in loopback for address, _ in listening), listening


def test_concurrent_requests_are_executed_in_batches(tiny_server):
    client = tiny_server.grpc_client()
    before = client.get_inference_statistics("onnx_linear").model_stats[0]
    x = np.ones((1, 4), dtype=np.float32)
    done, errors = [], []

    def callback(result, error):
        (errors if error else done).append(error or result)

    for _ in range(32):
        tensor = grpcclient.InferInput("input", [1, 4], "FP32")
        tensor.set_data_from_numpy(x)
        client.async_infer("onnx_linear", [tensor], callback)
    wait_for(lambda: len(done) + len(errors) >= 32, 30)
    assert not errors and len(done) == 32
    # Triton counts an execution after its responses are sent: wait (bounded) until all 32 are counted.
    wait_for(lambda: client.get_inference_statistics("onnx_linear").model_stats[0].inference_count - before.inference_count == 32, 5)
    after = client.get_inference_statistics("onnx_linear").model_stats[0]
    requests = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    assert requests == 32
    assert executions < requests, f"{requests} requests ran in {executions} executions: no batching"
    sizes = {b.batch_size for b in after.batch_stats}
    assert max(sizes) > 1 and max(sizes) <= 8  # max_batch_size of the config


def test_a_request_over_max_batch_size_is_refused(tiny_server):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="batch-size must be <= 8"):
        _infer(tiny_server, "onnx_linear", "input", np.ones((9, 4), dtype=np.float32))


def test_instance_count_starts_that_many_backend_processes(tiny_server, tiny_repo):
    name = "onnx_three"
    config = make_config(name, "onnxruntime_onnx", [("input", "TYPE_FP32", [4])], [("output", "TYPE_FP32", [3])], count=3)
    write_model(tiny_repo, config, tiny_repo / "onnx_victim" / "1" / "model.onnx", "model.onnx")
    tiny_server.load(name)
    try:
        tiny_server.scan_stubs()
        instances = sorted(s.instance for s in tiny_server.stubs.values() if s.model == name)
        assert instances == [f"{name}_0_0", f"{name}_0_1", f"{name}_0_2"]
    finally:
        tiny_server.unload(name)


def test_a_model_that_fails_at_start_is_named_with_its_cause_and_nothing_is_left(tiny_artifacts, tmp_path):
    repo = tmp_path / "repo"
    config = make_config("wrong_input", "onnxruntime_onnx", [("INPUT0", "TYPE_FP32", [4])], [("output", "TYPE_FP32", [3])])
    write_model(repo, config, tiny_artifacts["onnx"], "model.onnx")
    server = Server(repo, control_mode="none")
    with pytest.raises(ServeError) as info:
        server.start()
    message = str(info.value)
    assert "model 'wrong_input' failed to load" in message
    assert "unexpected inference input 'INPUT0', allowed inputs are: input" in message
    assert "log tail:" in message
    assert server.leftovers() == {"processes": [], "shm_regions": []}


def test_stop_leaves_no_process_and_no_shared_memory(tiny_repo):
    with serve(tiny_repo, control_mode="explicit", load_models=("onnx_victim",)) as server:
        server.scan_stubs()
        stubs = [s.pid for s in server.stubs.values()]
        server_pid = server.process.pid
        assert stubs and server.leftovers()["shm_regions"]
    assert server.leftovers() == {"processes": [], "shm_regions": []}
    for pid in [server_pid, *stubs]:
        assert not Path(f"/proc/{pid}").exists(), f"pid {pid} still exists"


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.slow
def test_serve_repo_command_serves_until_sigterm_then_stops_cleanly(tiny_repo):
    cmd = [str(Path(sys.executable).parent / "serve-repo"), str(tiny_repo), "--http-port", "0", "--grpc-port", "0",
           "--metrics-port", "0", "--model-control-mode", "explicit", "--load-model", "onnx_victim"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any("Ctrl-C to stop" in line for line in lines) and time.monotonic() < deadline:
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.1)
        banner = next(line for line in lines if "Ctrl-C to stop" in line)
        assert "1 models ready: onnx_victim" in banner
        triton = _children(proc.pid)
        assert len(triton) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=5)
    assert not Path(f"/proc/{triton[0]}").exists()
    assert "serve-repo: stopping" in "".join(lines)


def test_serve_repo_command_fails_in_one_line_on_a_missing_repository(tmp_path):
    result = subprocess.run([str(Path(sys.executable).parent / "serve-repo"), str(tmp_path / "nowhere")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"serve-repo: {tmp_path / 'nowhere'}: no such model repository"]
