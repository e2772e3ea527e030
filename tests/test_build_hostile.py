"""Hostile build inputs: each refused in one line naming the file and key, with memory bounded
(build-repo runs under an address-space limit) and the repository left as it was."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tritonforge.builder import BuildOptions, build_repository

ROOT = Path(__file__).resolve().parents[1]
ADDRESS_SPACE_MB = 1536  # a build of a tiny ONNX model needs well under this; an alias bomb needs gigabytes


def tiny_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "relu", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def laughs(key_path: str) -> str:
    """A 'billion laughs' document whose expansion sits under ``key_path`` (dotted)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        prev = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]")
    head, *rest = key_path.split(".")
    value = "*i"
    for key in reversed(rest):
        value = "{" + f"{key}: {value}" + "}"
    return "\n".join(lines).replace("a: &a", "x_a: &a", 1) + f"\n{head}: {value}\n"


ALIAS = "YAML anchors and aliases are not allowed in a sidecar"
OUTSIDE = "resolves outside the models folder"

# (model name, sidecar text or None, extra setup(models, outside), message fragment)
SIDECAR_CASES = [
    ("bomb_tolerance", "tolerance: &t {atol: 0.1}\nsample_rows: 2\nx: *t\n", None, ALIAS),
    ("bomb_labels", laughs("labels"), None, ALIAS),
    ("bomb_samples", laughs("samples"), None, ALIAS),
    ("bomb_inputs", laughs("inputs"), None, ALIAS),
    ("bomb_dynamic_batching", laughs("dynamic_batching.preferred_batch_size"), None, ALIAS),
    ("bomb_preprocess", laughs("preprocess.fields"), None, ALIAS),
    ("bomb_postprocess", laughs("postprocess.top_k"), None, ALIAS),
    ("deep_nesting", "labels: " + "[" * 200 + "]" * 200 + "\n", None, "nested deeper than"),
    ("huge_sidecar", "labels: [" + ",".join(["x" * 60] * 20000) + "]\n", None, "is larger than"),
    ("labels_parent", "labels: ../outside/secret.txt\n", None, f"'labels' path '../outside/secret.txt' {OUTSIDE}"),
    ("labels_absolute", "labels: {outside}/secret.txt\n", None, f"'labels' path '{{outside}}/secret.txt' {OUTSIDE}"),
    ("labels_symlink", "labels: link.txt\n", lambda models, outside: os.symlink(outside / "secret.txt", models / "link.txt"),
     f"'labels' path 'link.txt' {OUTSIDE}"),
    ("samples_parent", "samples: ../outside/rows.npz\n", None, f"'samples' path '../outside/rows.npz' {OUTSIDE}"),
    ("user_step_parent", "preprocess: {step: user, file: ../outside/step.py, function: f}\n", None,
     f"'preprocess.file' path '../outside/step.py' {OUTSIDE}"),
    ("postprocess_absolute", "postprocess: {step: user, file: /etc/hostname, function: f}\n", None,
     f"'postprocess.file' path '/etc/hostname' {OUTSIDE}"),
]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """One build of every hostile model, in a child process under an address-space limit."""
    base = tmp_path_factory.mktemp("hostile")
    models, outside = base / "models", base / "outside"
    models.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    (outside / "step.py").write_text("def f(batch):\n    return batch\n")
    import numpy as np

    np.savez(outside / "rows.npz", input=np.zeros((2, 4), np.float32))
    tiny_onnx(outside / "elsewhere.onnx")
    for name, sidecar, setup, _ in SIDECAR_CASES:
        tiny_onnx(models / f"{name}.onnx")
        (models / f"{name}.yaml").write_text(sidecar.replace("{outside}", str(outside)))
        if setup:
            setup(models, outside)
    os.symlink(outside / "elsewhere.onnx", models / "symlinked_model.onnx")
    repo = base / "repo"
    script = ("import resource, sys, json\n"
              f"resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE_MB << 20}, {ADDRESS_SPACE_MB << 20}))\n"
              "from pathlib import Path\nfrom tritonforge.builder import build_repository\n"
              "results = build_repository(Path(sys.argv[1]), Path(sys.argv[2]))\n"
              "print(json.dumps({r.name: [r.status, r.reason] for r in results}))\n")
    done = subprocess.run([sys.executable, "-c", script, str(models), str(repo)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), models, outside, repo


@pytest.mark.parametrize("name, sidecar, setup, message", SIDECAR_CASES, ids=[row[0] for row in SIDECAR_CASES])
def test_hostile_sidecar_is_refused_in_one_line_naming_file_and_key(hostile, name, sidecar, setup, message):
    results, _, outside, _ = hostile
    status, reason = results[name]
    assert status == "FAILED"
    assert reason.startswith(f"{name}.onnx: {name}.yaml: "), reason
    assert message.replace("{outside}", str(outside)) in reason
    assert "\n" not in reason and len(reason) < 400


def test_a_model_symlinked_from_outside_is_refused(hostile):
    results, _, outside, _ = hostile
    status, reason = results["symlinked_model"]
    assert status == "FAILED"
    assert f"symlinked_model.onnx: is a symlink to {outside / 'elsewhere.onnx'}, outside the models folder" in reason


def test_hostile_inputs_write_nothing(hostile):
    results, _, _, repo = hostile
    assert all(status == "FAILED" for status, _ in results.values())
    assert not repo.exists()


def test_allow_outside_lets_a_named_folder_in(tmp_path):
    models, outside = tmp_path / "models", tmp_path / "outside"
    models.mkdir()
    outside.mkdir()
    tiny_onnx(outside / "elsewhere.onnx")
    (outside / "labels.txt").write_text("a\nb\nc\nd\n")
    os.symlink(outside / "elsewhere.onnx", models / "linked.onnx")
    (models / "linked.yaml").write_text("labels: ../outside/labels.txt\n")
    [result] = build_repository(models, tmp_path / "repo", BuildOptions(allow_outside=(outside,)))
    assert result.status == "OK", result.reason


class Disguise:
    """Pickled as an arbitrary object: loading it would run this module's code."""


def _pickle(path: Path, value) -> None:
    path.write_bytes(pickle.dumps(value, protocol=4))


PICKLES = [
    ("booster.json", {"learner": 1}, "booster.json: is a pickle named '.json'; pickles are loaded only from .pkl, .pickle, .joblib files"),
    ("booster.ubj", {"a": 1}, "booster.ubj: is a pickle named '.ubj'"),
    ("weights.h5", {"a": 1}, "weights.h5: is a pickle named '.h5'"),
    ("model.keras", {"a": 1}, "model.keras: is a pickle named '.keras'"),
    ("program.pt2", {"a": 1}, "program.pt2: is a pickle named '.pt2'"),
    ("settings.pkl", {"threshold": 0.5}, "settings.pkl: is a pickle of a builtins.dict, not a model any adapter takes"),
]


@pytest.mark.parametrize("filename, value, message", PICKLES, ids=[row[0] for row in PICKLES])
def test_pickles_are_known_by_their_bytes_and_loaded_only_by_their_name(tmp_path, filename, value, message):
    models = tmp_path / "models"
    models.mkdir()
    _pickle(models / filename, value)
    [result] = build_repository(models, tmp_path / "repo", BuildOptions(allow_pickle=True))
    assert result.status == "FAILED"
    assert message in result.reason, result.reason
    assert not (tmp_path / "repo").exists()


def test_built_repository_is_readable_by_another_user(tmp_path):
    """The NGC image runs Triton as a non-root user on a bind-mounted repository."""
    models = tmp_path / "models"
    models.mkdir()
    tiny_onnx(models / "relu.onnx")
    mask = os.umask(0o022)
    own = Path(tempfile.mkdtemp(prefix="tritonforge-modes-"))  # a folder of its own, not pytest's 0700 root
    try:
        os.chmod(own, 0o755)
        repo = own / "repo"
        [result] = build_repository(models, repo)
        assert result.status == "OK", result.reason
        modes = {str(p.relative_to(repo)): p.stat().st_mode & 0o777 for p in [repo, *repo.rglob("*")]}
        assert {m for p, m in modes.items() if (repo / p).is_dir()} == {0o755}, modes
        assert {m for p, m in modes.items() if (repo / p).is_file()} == {0o644}, modes
        if os.geteuid() == 0:  # read every file as 'nobody'
            done = subprocess.run(["find", str(repo), "-type", "f", "-exec", "cat", "{}", "+"], user=65534,
                                  capture_output=True, timeout=60)
            assert done.returncode == 0, done.stderr
    finally:
        os.umask(mask)
        shutil.rmtree(own, ignore_errors=True)
