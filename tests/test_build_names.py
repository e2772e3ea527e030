"""Names users gave survive the build as Triton tensor names (README: "Tensor names")."""
from __future__ import annotations

import numpy as np
import pytest

from tritonforge.builder import build_repository
from tritonforge.repository import config as configs
from tritonforge.repository import tensor_name


def make_models(folder):
    import keras
    import torch

    x = np.zeros((2, 4), np.float32)
    unnamed = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    unnamed(x)
    unnamed.save(folder / "keras_unnamed.keras")

    named = keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(3, activation="softmax", name="probabilities")])
    named(x)
    named.save(folder / "keras_named_sequential.keras")

    features, extra = keras.Input((4,), name="features"), keras.Input((2,), name="extra")
    hidden = keras.layers.Concatenate()([features, extra])
    two = keras.Model([features, extra], [keras.layers.Dense(1, name="price")(hidden), keras.layers.Dense(2, name="risk")(hidden)])
    two.save(folder / "keras_two_heads.keras")

    class DictHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(4, 3)

        def forward(self, pixels):
            hidden = self.body(pixels)
            return {"logits": hidden, "embedding/norm": hidden.norm(dim=1, keepdim=True)}

    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(DictHeads().eval(), (torch.randn(2, 4),), dynamic_shapes={"pixels": {0: batch}})
    torch.export.save(program, str(folder / "torch_dict_outputs.pt2"))


@pytest.fixture(scope="module")
def named_repo(tmp_path_factory):
    models = tmp_path_factory.mktemp("named_models")
    make_models(models)
    repo = tmp_path_factory.mktemp("named") / "repo"
    results = {r.name: r for r in build_repository(models, repo)}
    assert all(r.status == "OK" for r in results.values()), {n: r.reason for n, r in results.items()}
    return repo


NAMES = [
    ("keras_unnamed", ["input"], ["output"]),
    ("keras_named_sequential", ["features"], ["probabilities"]),
    ("keras_two_heads", ["features", "extra"], ["price", "risk"]),
    ("torch_dict_outputs", ["pixels"], ["logits", "embedding_norm"]),
]


@pytest.mark.parametrize("model, inputs, outputs", NAMES, ids=[row[0] for row in NAMES])
def test_tensor_names_are_the_users_own(named_repo, model, inputs, outputs):
    config = configs.read(named_repo / model)
    assert [t.name for t in config.input] == inputs
    assert [t.name for t in config.output] == outputs


CLEANED = [("Identity:0", "Identity_0"), ("embedding/norm", "embedding_norm"), ("price", "price"),
           ("a.b-c_d", "a.b-c_d"), ("3rd", "_3rd"), ("with space", "with_space")]


@pytest.mark.parametrize("given, served", CLEANED)
def test_only_unportable_characters_are_replaced(given, served):
    assert tensor_name(given) == served
