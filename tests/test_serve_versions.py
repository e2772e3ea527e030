"""Poll mode: a new version built into the served repository is picked up under load, with no failure."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tritonforge.builder import BuildOptions, build_repository
from fixtures_serving import WEIGHTS, onnx_linear
from tritonforge.serving.server import serve


@pytest.mark.slow
def test_a_version_built_under_load_is_served_with_zero_failed_requests(tmp_path):
    src, repo = tmp_path / "models", tmp_path / "model_repository"
    onnx_linear(src / "lin.onnx")
    build_repository(src, repo, BuildOptions())
    assert sorted(p.name for p in (repo / "lin").iterdir() if p.name.isdigit()) == ["1"]
    x = np.ones((1, 4), dtype=np.float32)
    old, new = x @ WEIGHTS, x @ (WEIGHTS * 2)

    with serve(repo, control_mode="poll", poll_secs=0.5) as server:
        answers, failures, stop = [], [], threading.Event()

        def client_loop():
            client = server.grpc_client()
            deadline = time.monotonic() + 90
            while not stop.is_set() and time.monotonic() < deadline and len(answers) + len(failures) < 20000:
                tensor = grpcclient.InferInput("input", [1, 4], "FP32")
                tensor.set_data_from_numpy(x)
                try:
                    answers.append(client.infer("lin", [tensor]).as_numpy("output"))
                except Exception as exc:  # every failure is a defect here
                    failures.append(str(exc))

        loop = threading.Thread(target=client_loop)
        loop.start()
        try:
            time.sleep(1.0)
            # The new weights, rebuilt into the served repository (staged, then one rename).
            onnx_linear(src / "lin.onnx")
            import onnx
            from onnx import numpy_helper

            model = onnx.load(str(src / "lin.onnx"))
            model.graph.initializer[0].CopyFrom(numpy_helper.from_array(WEIGHTS * 2, "W"))
            onnx.save(model, str(src / "lin.onnx"))
            build_repository(src, repo, BuildOptions())
            assert (repo / "lin" / "2").is_dir()

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (answers and np.allclose(answers[-1], new)):
                time.sleep(0.1)
            seen_new = len(answers)
            time.sleep(0.5)
        finally:
            stop.set()
            loop.join(timeout=30)

        assert failures == [], failures[:3]
        assert np.allclose(answers[0], old)
        assert np.allclose(answers[-1], new), "version 2 never answered"
        assert all(np.allclose(a, new) for a in answers[seen_new:]), "version 1 answered after version 2"
        index = {(m.name, m.version): m.state for m in server.grpc_client().get_model_repository_index().models}
        assert index[("lin", "2")] == "READY"
