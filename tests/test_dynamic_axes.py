"""Dynamic axes other than the batch (a sequence length) stay dynamic from the sidecar or the
program to the artifact and the config, are verified at two sizes, and the entry Triton loads
answers a length it was never traced at like its source."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from fixtures_serving import load_copy
from tritonforge.builder import BuildOptions, build_repository

SEQUENCE_SIDECAR = "inputs: [{name: series, shape: [-1, -1, 8], dtype: float32}]\n"


import torch  # noqa: E402  (the modules below are pickled by torch.save: their classes live at module level)


class LastStep(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 16, batch_first=True)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, series):
        out, _ = self.lstm(series)
        return self.head(out[:, -1])


class EveryStep(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(8, 16, batch_first=True)

    def forward(self, series):
        out, _ = self.gru(series)
        return out


class Encoder(torch.nn.Module):
    """A BERT-style encoder: token embeddings, a transformer layer masked by attention_mask."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(100, 32)
        self.layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.head = torch.nn.Linear(32, 2)

    def forward(self, input_ids, attention_mask):
        hidden = self.layer(self.embed(input_ids), src_key_padding_mask=attention_mask == 0)
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * weights).sum(1) / weights.sum(1).clamp(min=1))


def _seeded(cls, seed: int):
    torch.manual_seed(seed)
    return cls().eval()


def _save_models(models: Path) -> dict:
    models.mkdir()
    sources = {"lstm_script": _seeded(LastStep, 0), "gru_module": _seeded(EveryStep, 1), "lstm_torchscript": _seeded(LastStep, 0)}
    torch.jit.script(sources["lstm_script"]).save(str(models / "lstm_script.pt"))
    torch.save(sources["gru_module"], models / "gru_module.pt")
    torch.jit.script(sources["lstm_torchscript"]).save(str(models / "lstm_torchscript.pt"))
    for name in sources:
        (models / f"{name}.yaml").write_text(SEQUENCE_SIDECAR + ("format: torchscript\n" if name == "lstm_torchscript" else ""))
    encoder = _seeded(Encoder, 2)
    batch, length = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("sequence", min=2, max=512)
    ids = torch.randint(1, 100, (2, 5))
    mask = torch.ones(2, 5, dtype=torch.int64)
    with torch.no_grad():
        program = torch.export.export(encoder, (ids, mask), dynamic_shapes={"input_ids": {0: batch, 1: length},
                                                                            "attention_mask": {0: batch, 1: length}})
    torch.export.save(program, str(models / "encoder.pt2"))
    sources["encoder"] = encoder
    return sources


@pytest.fixture(scope="module")
def sequence_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequences")
    sources = _save_models(root / "models")
    results = build_repository(root / "models", root / "repo", BuildOptions(allow_pickle=True))
    return root / "repo", {r.name: r for r in results}, sources


NAMES = ["lstm_script", "gru_module", "lstm_torchscript", "encoder"]


@pytest.mark.parametrize("name", NAMES)
def test_a_dynamic_sequence_axis_stays_dynamic_in_the_signature(sequence_build, name):
    _, results, _ = sequence_build
    result = results[name]
    assert result.status == "OK", result.reason
    assert all(spec.shape[1] == -1 for spec in result.signature.inputs), result.signature.describe()


@pytest.mark.parametrize("name", NAMES)
def test_the_config_keeps_the_axis_and_warmup_uses_a_concrete_size(sequence_build, name):
    repo, _, _ = sequence_build
    config = text_format.Parse((repo / name / "config.pbtxt").read_text(), mc.ModelConfig())
    assert all(tensor.dims[0] == -1 for tensor in config.input)
    for warmup in config.model_warmup:
        for data in warmup.inputs.values():
            assert all(d > 0 for d in data.dims), text_format.MessageToString(warmup)


def test_an_output_that_follows_the_sequence_is_dynamic_too(sequence_build):
    _, results, _ = sequence_build
    [output] = results["gru_module"].signature.outputs
    assert output.shape == (-1, -1, 16)


@pytest.mark.parametrize("name", NAMES)
def test_verification_ran_at_two_sizes_and_the_manifest_says_which(sequence_build, name):
    repo, _, _ = sequence_build
    record = json.loads((repo / "manifest.json").read_text())["models"][name]["versions"]["1"]
    shapes = record["verified_shapes"]
    assert len(shapes) == 2 and shapes[0] != shapes[1], shapes


def _request(name: str, length: int):
    rng = np.random.default_rng(length)
    if name == "encoder":
        ids = rng.integers(1, 100, (2, length)).astype(np.int64)
        mask = np.ones((2, length), np.int64)
        mask[1, length // 2:] = 0  # the second row padded
        return {"input_ids": ids, "attention_mask": mask}
    return {"series": rng.standard_normal((2, length, 8)).astype(np.float32)}


def _source_answer(module, inputs: dict) -> np.ndarray:
    with torch.no_grad():
        return module(*(torch.from_numpy(v) for v in inputs.values())).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_triton_loads_the_entry_and_answers_lengths_it_never_saw(sequence_build, tiny_server, tiny_repo, name):
    """Two lengths the build never used (17 and 5 steps), batch 2: Triton's answer equals the source's."""
    import tritonclient.http as http

    repo, _, sources = sequence_build
    served = load_copy(tiny_server, tiny_repo, repo / name, f"seq_{name}")
    config = text_format.Parse((tiny_repo / served / "config.pbtxt").read_text(), mc.ModelConfig())
    client = http.InferenceServerClient(tiny_server.http_url.removeprefix("http://"))
    for length in (17, 5):
        inputs = _request(name, length)
        tensors = []
        for key, value in inputs.items():
            tensor = http.InferInput(config.input[len(tensors)].name, list(value.shape),
                                     "FP32" if value.dtype == np.float32 else "INT64")
            tensor.set_data_from_numpy(value)
            tensors.append(tensor)
        answer = client.infer(served, tensors).as_numpy(config.output[0].name)
        np.testing.assert_allclose(answer, _source_answer(sources[name], inputs), atol=1e-4, rtol=1e-3)
