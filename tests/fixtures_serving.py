"""Serving fixtures: tiny artifacts of each platform with hand-written configs, and servers.

``tiny_repo`` holds one small model per backend (ONNX, TorchScript, SavedModel) plus an ONNX
string model, each with a config written as a ModelConfig message and a samples.npz in the
layout build-repo writes. ``tiny_server`` serves it once per session (explicit mode, every
model loaded), so tests can also load extra, deliberately broken models into it.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

def wait_for(condition, seconds: float = 60.0) -> bool:
    """Whether ``condition()`` came true within ``seconds`` (polled, so the wait is bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def load_copy(server, served_repo: Path, built_model: Path, served: str) -> str:
    """A built entry copied into a served repository as ``served`` (config renamed, per-host
    variants dropped) and loaded there: one shared server answers entries of many builds."""
    from tritonclient.grpc import model_config_pb2 as mc

    if not (served_repo / served).exists():
        shutil.copytree(built_model, served_repo / served)
        config = text_format.Parse((served_repo / served / "config.pbtxt").read_text(), mc.ModelConfig())
        config.name = served
        (served_repo / served / "config.pbtxt").write_text(text_format.MessageToString(config))
        shutil.rmtree(served_repo / served / "configs", ignore_errors=True)
        server.load(served)
    return served


WEIGHTS = np.arange(12, dtype=np.float32).reshape(4, 3) / 10.0


def onnx_linear(path: Path, *, batch: int | str = "N", features: int = 4) -> None:
    """y = x @ W, input 'input' [batch, 4] float, output 'output' [batch, 3] float."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, features])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 3])
    w = helper.make_tensor("W", TensorProto.FLOAT, [features, 3], WEIGHTS[:features].reshape(-1).tolist())
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "W"], ["output"])], "linear", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def onnx_strings(path: Path) -> None:
    """'text' [N, 1] string -> 'same' [N, 1] string (Identity) and 'length' [N, 1] int64 ... kept simple:
    Identity on strings plus a float passthrough, to exercise TYPE_STRING both ways."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("text", TensorProto.STRING, ["N", 1])
    y = helper.make_tensor_value_info("same", TensorProto.STRING, ["N", 1])
    graph = helper.make_graph([helper.make_node("Identity", ["text"], ["same"])], "strings", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def torchscript_linear(path: Path) -> None:
    import torch

    lin = torch.nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(WEIGHTS.T.copy()))
    traced = torch.jit.trace(lin.eval(), torch.zeros(2, 4))
    path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(path))


def savedmodel_linear(path: Path) -> None:
    import tensorflow as tf

    class Linear(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(WEIGHTS)

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
        def __call__(self, features):
            return {"scores": tf.matmul(features, self.w)}

    module = Linear()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})


def make_config(name: str, platform: str, inputs, outputs, *, max_batch_size: int = 8,
                kind: str = "KIND_CPU", count: int = 1, batching: bool = True, parameters=None, op_libraries=()):
    """A ModelConfig: inputs/outputs as (name, TYPE_X, dims) triples; ``op_libraries``: the
    ``model_operations { op_library_filename }`` values."""
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(name=name, platform=platform, max_batch_size=max_batch_size)
    for n, t, dims in inputs:
        config.input.add(name=n, data_type=mc.DataType.Value(t), dims=list(dims))
    for n, t, dims in outputs:
        config.output.add(name=n, data_type=mc.DataType.Value(t), dims=list(dims))
    group = config.instance_group.add(kind=mc.ModelInstanceGroup.Kind.Value(kind))
    if count:
        group.count = count
    if batching and max_batch_size > 0:
        config.dynamic_batching.max_queue_delay_microseconds = 20000
    for key, value in (parameters or {}).items():
        config.parameters[key].string_value = value
    config.model_operations.op_library_filename.extend(op_libraries)
    return config


def write_model(repo: Path, config, artifact: Path, filename: str, version: str = "1",
                samples: dict | None = None) -> Path:
    """Lay out ``repo/<name>/`` as build-repo does: config.pbtxt, <version>/<file>, samples.npz."""
    folder = repo / config.name
    (folder / version).mkdir(parents=True, exist_ok=True)
    target = folder / version / filename
    if artifact.is_dir():
        shutil.copytree(artifact, target)
    else:
        shutil.copy2(artifact, target)
    (folder / "config.pbtxt").write_text(text_format.MessageToString(config))
    if samples is not None:
        np.savez(folder / version / "samples.npz", **samples)
    return folder


def linear_samples(rows: int = 5) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).random((rows, 4), dtype=np.float32)
    return x, x @ WEIGHTS


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory) -> dict[str, Path]:
    """One small artifact per platform, made once (read-only: copy before changing)."""
    root = tmp_path_factory.mktemp("artifacts")
    paths = {
        "onnx": root / "linear.onnx",
        "onnx_fixed": root / "linear_fixed.onnx",
        "onnx_strings": root / "strings.onnx",
        "torchscript": root / "linear.pt",
        "savedmodel": root / "linear.savedmodel",
    }
    onnx_linear(paths["onnx"])
    onnx_linear(paths["onnx_fixed"], batch=2)
    onnx_strings(paths["onnx_strings"])
    torchscript_linear(paths["torchscript"])
    savedmodel_linear(paths["savedmodel"])
    return paths


@pytest.fixture(scope="session")
def tiny_repo(tiny_artifacts, tmp_path_factory) -> Path:
    """A repository with one model per backend, KIND_GPU on the NN ones as the builder writes."""
    repo = tmp_path_factory.mktemp("tiny") / "model_repository"
    x, y = linear_samples()
    tol = {"atol": np.float64(1e-5), "rtol": np.float64(1e-4)}
    write_model(repo, make_config("onnx_linear", "onnxruntime_onnx", [("input", "TYPE_FP32", [4])],
                                  [("output", "TYPE_FP32", [3])], kind="KIND_GPU", count=0),
                tiny_artifacts["onnx"], "model.onnx",
                samples={"input/input": x, "output/output": y, **tol})
    write_model(repo, make_config("onnx_victim", "onnxruntime_onnx", [("input", "TYPE_FP32", [4])],
                                  [("output", "TYPE_FP32", [3])]),
                tiny_artifacts["onnx"], "model.onnx")
    text = np.array([["a"], ["héllo"], [""]])
    write_model(repo, make_config("onnx_strings", "onnxruntime_onnx", [("text", "TYPE_STRING", [1])],
                                  [("same", "TYPE_STRING", [1])]),
                tiny_artifacts["onnx_strings"], "model.onnx",
                samples={"input/text": text, "output/same": text, **tol})
    write_model(repo, make_config("torch_linear", "pytorch_libtorch", [("INPUT__0", "TYPE_FP32", [4])],
                                  [("OUTPUT__0", "TYPE_FP32", [3])], kind="KIND_GPU"),
                tiny_artifacts["torchscript"], "model.pt",
                samples={"input/INPUT__0": x, "output/OUTPUT__0": y, **tol})
    write_model(repo, make_config("tf_linear", "tensorflow_savedmodel", [("features", "TYPE_FP32", [4])],
                                  [("scores", "TYPE_FP32", [3])]),
                tiny_artifacts["savedmodel"], "model.savedmodel",
                samples={"input/features": x, "output/scores": y, **tol})
    return repo


@pytest.fixture(scope="session")
def tiny_server(tiny_repo):
    """tiny_repo served once per session (explicit mode, every model loaded at start)."""
    from tritonforge.serving.server import serve

    with serve(tiny_repo, control_mode="explicit", load_models=("*",)) as server:
        yield server


@pytest.fixture(scope="session")
def examples_server(built_examples_repo):
    """The built examples served once per session (none mode: what check-repo starts)."""
    from tritonforge.serving.server import serve

    with serve(built_examples_repo, control_mode="none", ready_timeout=600) as server:
        yield server
