"""A torchvision classifier saved as users save it (``torch.save`` of the whole module, so the pickle
names torchvision's classes) builds with ``allow_pickle``, loads in Triton and answers like torch on
varied images, three at a time."""
from __future__ import annotations

import json

import numpy as np
import pytest

try:
    import torch
    import torchvision
except Exception as exc:  # not installed, or a wheel that does not load beside this torch (its +cpu build)
    pytest.skip(f"torchvision is not importable here ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                "it needs torch's CUDA build beside it (pip install 'tritonforge[vision]'; docs/TORCHVISION.md)",
                allow_module_level=True)

from fixtures_serving import load_copy
from tritonforge.builder import BuildOptions, build_repository

SIDE = 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]  # ImageNet's, as torchvision's transforms
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]
ATOL, RTOL = 1e-4, 1e-3


def _normalized(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 -> [3, H, W] float32 as a user's preprocessing hands it to the model."""
    return (rgb.transpose(2, 0, 1).astype(np.float32) / 255.0 - MEAN) / STD


def _varied_images() -> np.ndarray:
    """Nine images that differ in what a CNN responds to: two photographs (scikit-learn ships them)
    and their crops, edges, smooth gradients, flat colours and noise."""
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images  # 427 x 640 RGB
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    checker = (((y // 16) + (x // 16)) % 2 * 255).astype(np.uint8)
    gradient = np.stack([x * 255 // SIDE, y * 255 // SIDE, (x + y) * 255 // (2 * SIDE)], axis=-1).astype(np.uint8)
    rng = np.random.default_rng(7)
    images = [
        china[:SIDE, :SIDE], flower[100:100 + SIDE, 200:200 + SIDE], china[-SIDE:, -SIDE:],
        np.repeat(checker[..., None], 3, axis=-1), gradient, np.full((SIDE, SIDE, 3), (200, 30, 30), np.uint8),
        np.zeros((SIDE, SIDE, 3), np.uint8), rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8), flower[-SIDE:, :SIDE],
    ]
    return np.stack([_normalized(np.ascontiguousarray(i)) for i in images])


def _classifier() -> torch.nn.Module:
    """mobilenet_v3_small with random weights that answer like a trained one's in scale: batch-norm
    statistics measured on images (default ones leave every logit near 1e-10, where any artifact
    passes an absolute tolerance) and a head initialised for unit-scale logits."""
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(weights=None)
    for layer in net.classifier:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.kaiming_normal_(layer.weight)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the calibration batch
    rng = np.random.default_rng(1)
    calibration = np.concatenate([_varied_images()[::-1], rng.normal(0, 1, (7, 3, SIDE, SIDE)).astype(np.float32)])
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(calibration))
    for norm in norms:
        norm.momentum = 0.01  # torchvision's own setting for MobileNetV3, as a user's pickle has it
    return net.eval()


@pytest.fixture(scope="module")
def vision_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    models = root / "models"
    models.mkdir()
    net = _classifier()
    torch.save(net, models / "mobilenet_v3.pt")  # the whole module: the pickle names torchvision's classes
    (models / "mobilenet_v3.yaml").write_text(f"inputs: [{{name: image, shape: [-1, 3, {SIDE}, {SIDE}], dtype: float32}}]\n")
    results = build_repository(models, root / "repo", BuildOptions(allow_pickle=True))
    return root / "repo", {r.name: r for r in results}, net


def test_a_torch_saved_torchvision_classifier_builds_and_is_verified_at_a_batch(vision_build):
    repo, results, _ = vision_build
    result = results["mobilenet_v3"]
    assert result.status == "OK", result.reason
    assert [(s.name, s.shape) for s in result.signature.inputs] == [("image", (-1, 3, SIDE, SIDE))]
    assert [(s.name, s.shape) for s in result.signature.outputs] == [("output", (-1, 1000))]
    version = json.loads((repo / "manifest.json").read_text())["models"]["mobilenet_v3"]["versions"]["1"]
    assert version["tools"]["torch"] == torch.__version__.split("+")[0]
    assert all(int(shape.split("[")[1].split("x")[0]) > 1 for shape in version["verified_shapes"])


@pytest.mark.slow
def test_the_served_classifier_answers_varied_images_like_torch_three_at_a_time(vision_build, tiny_server, tiny_repo):
    import tritonclient.http as http

    repo, _, net = vision_build
    served = load_copy(tiny_server, tiny_repo, repo / "mobilenet_v3", "vision_mobilenet_v3")
    client = http.InferenceServerClient(tiny_server.http_url.removeprefix("http://"))
    images = _varied_images()
    for start in range(0, len(images), 3):
        batch = images[start:start + 3]
        tensor = http.InferInput("image", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        answer = client.infer(served, [tensor]).as_numpy("output")
        with torch.no_grad():
            expected = net(torch.from_numpy(batch)).numpy()
        assert answer.shape == (3, 1000)
        np.testing.assert_allclose(answer, expected, atol=ATOL, rtol=RTOL)
        assert list(answer.argmax(1)) == list(expected.argmax(1))
        # The images must tell apart in the answers, far beyond the tolerance: a model answering
        # every image alike (or an artifact that lost its input) cannot pass by matching a constant.
        for i, j in ((0, 1), (0, 2), (1, 2)):
            assert np.abs(expected[i] - expected[j]).max() > 1000 * ATOL
