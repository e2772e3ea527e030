"""A backend process that dies is noticed and its model reloaded, without restarting the server."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def _ask(client):
    tensor = grpcclient.InferInput("input", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    return client.infer("onnx_victim", [tensor]).as_numpy("output")


def test_a_killed_backend_process_is_replaced_within_ten_seconds(tiny_server, caplog):
    client = tiny_server.grpc_client()
    expected = _ask(client)
    server_pid = tiny_server.process.pid
    tiny_server.scan_stubs()
    victims = [s.pid for s in tiny_server.stubs.values() if s.model == "onnx_victim"]
    assert victims
    caplog.set_level("WARNING", logger="serve-repo")

    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    answered_after, failures = None, 0
    while time.monotonic() - killed_at < 15:
        try:
            np.testing.assert_allclose(_ask(client), expected)
            answered_after = time.monotonic() - killed_at
            break
        except InferenceServerException:
            failures += 1
            time.sleep(0.1)

    assert answered_after is not None and answered_after < 10, f"no answer 15 s after the kill ({failures} failures)"
    assert tiny_server.process.pid == server_pid and tiny_server.process.poll() is None
    assert any("onnx_victim" in r.getMessage() and "died" in r.getMessage() for r in caplog.records)
    assert tiny_server.recoveries[-1]["model"] == "onnx_victim" and tiny_server.recoveries[-1]["ok"]
    # The dead stub's shared-memory region went with it.
    live = {s.shm_region for s in tiny_server.stubs.values()}
    assert set(tiny_server.leftovers()["shm_regions"]) <= live | _regions_of_live_stubs(tiny_server)


def _regions_of_live_stubs(server) -> set[str]:
    from tritonforge.serving.server import _proc_children_stubs

    return {argv[2] for state, argv in _proc_children_stubs(server.process.pid).values() if state != "Z" and len(argv) > 2}


def _reload_and_settle(server, model, config_json=None):
    """Load ``model`` again with a different config (a real reload); wait until its old stubs are gone."""
    server.scan_stubs()
    old = {s.pid for s in server.stubs.values() if s.model == model}
    if config_json is None:
        server.load(model)
    else:
        server.grpc_client().load_model(model, config=config_json)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and old & {s.pid for s in server.stubs.values()}:
        time.sleep(0.25)
    time.sleep(2)  # a few monitor rounds after the old stubs are gone
    return old


def test_a_reload_that_replaces_backend_processes_is_not_taken_for_a_crash(examples_server):
    from google.protobuf import json_format

    # A client (or a poll) reloading a model with another config is a real reload: Triton starts
    # new stubs, then retires the old ones while the model stays READY.
    recoveries_before = len(examples_server.recoveries)
    config, _ = examples_server.served_config("iris_xgb")
    config.dynamic_batching.max_queue_delay_microseconds += 100
    try:
        old = _reload_and_settle(examples_server, "iris_xgb", json_format.MessageToJson(config))
        assert not old & {s.pid for s in examples_server.stubs.values()}, "the reload did not replace the stubs"
        assert len(examples_server.recoveries) == recoveries_before
        assert examples_server.model_states()[("iris_xgb", "1")] == "READY"
    finally:
        _reload_and_settle(examples_server, "iris_xgb")  # back to the config on disk


def test_a_killed_backend_process_costs_no_404_and_no_ensemble_outage(served_examples):
    """Recovery reloads in place: clients see at most the requests in flight on the dead instance fail."""
    import json
    import threading
    import urllib.error
    import urllib.request

    from tritonforge.repository import latest_samples, read_samples

    server, repo = served_examples
    model, ensemble = "churn_pipeline", "churn_pipeline_ensemble"
    rows = read_samples(latest_samples(repo / ensemble)).inputs["RAW"][:1].reshape(-1).tolist()
    body = json.dumps({"inputs": [{"name": "RAW", "shape": [1, 1], "datatype": "BYTES", "data": rows}]}).encode()
    statuses: list[int] = []
    listed: list[bool] = []
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 30  # bounded whatever happens
        while not stop.is_set() and time.monotonic() < deadline:
            request = urllib.request.Request(f"http://{server.http_url}/v2/models/{ensemble}/infer", body,
                                             {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
            with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{model}/ready", timeout=10) as ready:
                listed.append(ready.status == 200)

    recoveries_before = len(server.recoveries)
    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(1)
        server.scan_stubs()
        victims = [s.pid for s in server.stubs.values() if s.model == model]
        assert victims
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while len(server.recoveries) == recoveries_before and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)  # serve a while after the reload
    finally:
        stop.set()
        worker.join(timeout=40)
    assert server.recoveries[-1]["model"] == model and server.recoveries[-1]["ok"]
    assert 404 not in statuses, statuses
    assert all(listed), "the model went off the server during recovery"
    assert statuses[-1] == 200 and statuses.count(200) > 10
    failed = [s for s in statuses if s != 200]
    assert len(failed) <= 5, f"{len(failed)} failed requests: {sorted(set(failed))}"
