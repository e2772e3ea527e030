"""Bad input: one line naming the file and the cause, the other models still built, the repository untouched.

Each row is a broken folder entry and the words a user must see.
"""
from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import joblib
import numpy as np
import pytest
from fixtures_build import tree_digest

from tritonforge.builder import BuildOptions, build_repository
from tritonforge.errors import BuildError

GOOD = "house_price_xgb.ubj"


def truncated(source: str, keep: int):
    def write(folder: Path, examples: Path) -> None:
        (folder / source).write_bytes((examples / source).read_bytes()[:keep])
    return write


def text(name: str, content: str):
    def write(folder: Path, examples: Path) -> None:
        (folder / name).write_text(content)
    return write


def copy_with_sidecar(source: str, sidecar: str):
    def write(folder: Path, examples: Path) -> None:
        shutil.copy(examples / source, folder / source)
        (folder / (source.split(".")[0] + ".yaml")).write_text(sidecar)
    return write


def pickled(name: str, make):
    def write(folder: Path, examples: Path) -> None:
        joblib.dump(make(), folder / name)
    return write


def unsupported_estimator():
    from sklearn.semi_supervised import LabelSpreading

    rng = np.random.default_rng(0)
    return LabelSpreading().fit(rng.random((20, 3)), rng.integers(0, 2, 20))


def torch_file(name: str, make):
    def write(folder: Path, examples: Path) -> None:
        import torch

        torch.save(make(), folder / name)
    return write


def state_dict():
    import torch

    return torch.nn.Linear(3, 2).state_dict()


def clash(folder: Path, examples: Path) -> None:
    shutil.copy(examples / "price_two_inputs.h5", folder / "price.h5")
    shutil.copy(examples / "digits_cnn.keras", folder / "price.keras")


def wrong_samples(folder: Path, examples: Path) -> None:
    shutil.copy(examples / "iris_xgb.json", folder / "iris_xgb.json")
    buffer = io.BytesIO()
    np.savez(buffer, input=np.zeros((3, 7), np.float32))
    (folder / "rows.npz").write_bytes(buffer.getvalue())
    (folder / "iris_xgb.yaml").write_text("samples: rows.npz\n")


BAD_INPUTS = [
    ("truncated keras archive", truncated("digits_cnn.keras", 200), "digits_cnn", "digits_cnn.keras: named like a Keras file but not readable"),
    ("truncated xgboost json", truncated("iris_xgb.json", 120), "iris_xgb", "iris_xgb.json: XGBoost cannot load it"),
    ("truncated torch.export program", truncated("torch_cnn.pt2", 300), "torch_cnn", "torch_cnn.pt2: named like a torch.export file"),
    ("foreign file", text("notes.txt", "hello"), "notes", "notes.txt: not a model this tool recognises"),
    ("text named .onnx", text("fake.onnx", "not a protobuf"), "fake", "fake.onnx: not a valid ONNX model"),
    ("pickle without --allow-pickle", lambda f, e: shutil.copy(e / "churn_pipeline.joblib", f), "churn_pipeline",
     "churn_pipeline.joblib: is a pickle-based file and loading it runs code from the file; pass --allow-pickle"),
    ("unsupported estimator", pickled("spreading.pkl", unsupported_estimator), "spreading",
     "spreading.pkl: unsupported estimator: skl2onnx has no converter for LabelSpreading"),
    ("state_dict instead of a module", torch_file("weights.pth", state_dict), "weights", "weights.pth: holds a OrderedDict, not a torch.nn.Module"),
    ("sidecar with an unknown key", copy_with_sidecar("iris_xgb.json", "formt: onnx\n"), "iris_xgb",
     "iris_xgb.yaml: unknown key 'formt'"),
    ("sidecar with a wrong type", copy_with_sidecar("iris_xgb.json", "max_batch_size: lots\n"), "iris_xgb",
     "iris_xgb.yaml: 'max_batch_size' must be an integer >= 0, got 'lots'"),
    ("sidecar that is not YAML", copy_with_sidecar("iris_xgb.json", "labels: [a, b\n"), "iris_xgb",
     "iris_xgb.yaml: is not valid YAML at line 2"),
    ("format the framework lacks", copy_with_sidecar("iris_xgb.json", "format: torchscript\n"), "iris_xgb",
     "iris_xgb.json: format 'torchscript' is not available for xgboost models"),
    ("labels that fit no output", copy_with_sidecar("iris_xgb.json", "labels: [a, b]\n"), "iris_xgb",
     "iris_xgb.json: 2 labels given, but no output has 2 classes"),
    ("sample rows of the wrong width", wrong_samples, "iris_xgb", "iris_xgb.json: rows.npz: input 'input' has shape [3, 7], the model takes [-1, 4]"),
    ("TorchScript without input shapes", lambda f, e: _scripted(f), "scripted", "scripted.pt: a TorchScript archive records no input shapes"),
    ("XGBoost with categorical features", lambda f, e: _categorical_booster(f), "categorical",
     "categorical.json: the booster uses categorical features (enable_categorical), which onnxmltools cannot convert"),
    ("TorchScript trace that fixed a shape", lambda f, e: _lstm_program(f), "lstm",
     "model.pt: the TorchScript archive crashed"),
    ("multi-target regressor that converts to wrong numbers", lambda f, e: _two_targets(f, "one_output_per_tree"), "two_targets",
     "(max abs; allowed atol 0.0001 + rtol 0.001) (onnxmltools is known to give wrong numbers for multi-target XGBoost regressors)"),
    ("multi-output trees", lambda f, e: _two_targets(f, "multi_output_tree"), "two_targets",
     "two_targets.json: onnxmltools cannot convert this booster (reg:squarederror): Check failed: !with_stats"),
    ("two files, one model name", clash, "price", "name clash: price.h5 and price.keras would both become model 'price'"),
    ("sidecar without a model", text("ghost.yaml", "labels: [a]\n"), "ghost", "ghost.yaml: sidecar for a model that is not in the folder"),
]


def _lstm_program(folder: Path) -> None:
    """An LSTM whose traced TorchScript keeps the batch size of the trace, and aborts at another."""
    import torch

    class Sequence(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(4, 8, batch_first=True)

        def forward(self, steps: torch.Tensor) -> torch.Tensor:
            return self.lstm(steps)[0][:, -1]

    batch = torch.export.Dim("batch")
    program = torch.export.export(Sequence().eval(), (torch.randn(2, 5, 4),), dynamic_shapes={"steps": {0: batch}})
    torch.export.save(program, folder / "lstm.pt2")
    (folder / "lstm.yaml").write_text("format: torchscript\n")


def _two_targets(folder: Path, strategy: str) -> None:
    import xgboost as xgb

    rng = np.random.default_rng(0)
    rows = rng.random((100, 4)).astype(np.float32)
    regressor = xgb.XGBRegressor(n_estimators=5, tree_method="hist", multi_strategy=strategy)
    regressor.fit(rows, np.stack([rows[:, 0], rows[:, 1] * 3], axis=1)).save_model(folder / "two_targets.json")


def _categorical_booster(folder: Path) -> None:
    import pandas as pd
    import xgboost as xgb

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"color": pd.Categorical(rng.choice(["red", "blue"], 40)), "size": rng.random(40)})
    model = xgb.XGBClassifier(n_estimators=2, enable_categorical=True, tree_method="hist")
    model.fit(frame, rng.integers(0, 2, 40)).save_model(folder / "categorical.json")


def _scripted(folder: Path) -> None:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(torch.nn.Linear(3, 2), torch.randn(2, 3)).save(str(folder / "scripted.pt"))


@pytest.fixture()
def repo_with_good_model(example_models, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(example_models / GOOD, models / GOOD)
    repo = tmp_path / "repo"
    [result] = build_repository(models, repo)
    assert result.status == "OK"
    return models, repo


@pytest.mark.parametrize("case, make, model, message", BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_is_refused_with_one_line_and_loses_nothing(repo_with_good_model, example_models, case, make, model, message):
    models, repo = repo_with_good_model
    before = tree_digest(repo)
    make(models, example_models)
    allow_pickle = case != "pickle without --allow-pickle"
    results = {r.name: r for r in build_repository(models, repo, BuildOptions(allow_pickle=allow_pickle))}
    failed = results[model]
    assert failed.status == "FAILED"
    assert failed.reason.startswith(message) or message in failed.reason, failed.reason
    assert "\n" not in failed.reason and "Traceback" not in failed.reason
    assert results["house_price_xgb"].status == "UNCHANGED"
    assert tree_digest(repo) == before


WHOLE_BUILD_ERRORS = [
    ("output path is a file", lambda tmp: (tmp / "out").write_text("x"), "out", {}, "the output path is a file, not a folder"),
    ("output folder that is not a repository", lambda tmp: (tmp / "out").mkdir() or (tmp / "out" / "thesis").mkdir(),
     "out", {}, "is not empty and holds no manifest.json"),
    ("unknown Triton release", lambda tmp: None, "out", {"triton_version": "latest"}, "--triton-version 'latest': expected an NGC release"),
    ("TensorFlow for a release without its backend", lambda tmp: None, "out",
     {"triton_version": "25.09", "format": "savedmodel"}, "Triton 25.09 has no TensorFlow backend"),
]


@pytest.mark.parametrize("case, prepare, out, options, message", WHOLE_BUILD_ERRORS, ids=[row[0] for row in WHOLE_BUILD_ERRORS])
def test_whole_build_refusals(example_models, tmp_path, case, prepare, out, options, message):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(example_models / "price_two_inputs.h5", models)
    prepare(tmp_path)
    existed = (tmp_path / out).exists()
    before = tree_digest(tmp_path / out) if (tmp_path / out).is_dir() else None
    try:
        results = build_repository(models, tmp_path / out, BuildOptions(**options))
    except BuildError as exc:
        assert message in str(exc)
    else:
        assert [r.status for r in results] == ["FAILED"] and message in results[0].reason
    if before is not None:
        assert tree_digest(tmp_path / out) == before
    assert (tmp_path / out).exists() == existed


def test_a_build_of_only_broken_files_leaves_no_folder_behind(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "broken.onnx").write_bytes(b"not onnx")
    [result] = build_repository(models, tmp_path / "new_repo")
    assert result.status == "FAILED"
    assert not (tmp_path / "new_repo").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_the_build_lock_exists_only_while_a_build_runs(repo_with_good_model):
    from tritonforge.builder.staging import LOCK_FILE

    _, repo = repo_with_good_model
    assert not (repo / LOCK_FILE).exists()


def test_cli_reports_failures_with_exit_code_and_no_traceback(example_models, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(example_models / GOOD, models)
    (models / "notes.txt").write_text("hello")
    done = subprocess.run([str(Path(__file__).parents[1] / ".venv" / "bin" / "build-repo"), str(models), str(tmp_path / "repo")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stdout.splitlines()
    assert any(line.startswith("house_price_xgb") and " OK " in line for line in lines)
    assert any(line.split()[:3] == ["notes", "FAILED", "notes.txt:"] and "not a model this tool recognises" in line for line in lines)
    assert lines[-1] == "2 models: 1 built, 0 unchanged, 1 failed"


def test_cli_whole_build_error_exits_2(tmp_path):
    (tmp_path / "out").write_text("x")
    done = subprocess.run([str(Path(__file__).parents[1] / ".venv" / "bin" / "build-repo"), str(tmp_path), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"build-repo: error: {tmp_path / 'out'}: the output path is a file, not a folder"
