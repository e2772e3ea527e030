"""serve-repo's ONNX Runtime backend lets its pool threads spin only where nothing else needs the cores.

With dynamic (or sequence) batching tritonserver gathers the next batch while the model runs, and a
spinning pool would take its CPU; without batching the model runs one request at a time and the next
waits on the pool waking up. The config parameter ``tritonforge_allow_spinning`` overrides either.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tritonforge.serving.backends.common import ModelArgs

ROOT = Path(__file__).resolve().parents[1]


def _backend():
    spec = importlib.util.spec_from_file_location("ort_backend_model", ROOT / "serving/backends/onnxruntime/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SPIN = _backend().allow_spinning


def _args(**config):
    return ModelArgs(name="m", version="1", model_dir="/nonexistent", config={"max_batch_size": 8, **config})


@pytest.mark.parametrize("config,expected", [
    ({}, "1"),
    ({"dynamic_batching": {}}, "0"),
    ({"sequence_batching": {}}, "0"),
    ({"dynamic_batching": {}, "parameters": {"tritonforge_allow_spinning": {"string_value": "1"}}}, "1"),
    ({"parameters": {"tritonforge_allow_spinning": {"string_value": "0"}}}, "0"),
], ids=["no-batcher", "dynamic-batching", "sequence-batching", "override-on", "override-off"])
def test_spinning_follows_the_scheduler_unless_the_config_says(config, expected):
    assert SPIN(_args(**config)) == expected
