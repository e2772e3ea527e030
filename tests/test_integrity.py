"""The repository on disk is exactly what the manifest says: every file of every version by
sha256, no version the manifest does not know, and a build killed at any stage leaves the old
state or the new one, which the next build tidies and reports."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from fixtures_serving import onnx_linear
from tritonforge.builder import BuildOptions, build_repository
from tritonforge.builder.stages import STAGES
from tritonforge.repository import versions
from tritonforge.repository.integrity import drop_bytecode_caches, repository_problems

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _models(folder: Path, features: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx_linear(folder / "linear.onnx", features=features)
    return folder


def _recorded(repo: Path) -> list[int]:
    return sorted(int(v) for v in json.loads((repo / "manifest.json").read_text())["models"]["linear"]["versions"])


@pytest.fixture
def built(tmp_path) -> tuple[Path, Path]:
    models = _models(tmp_path / "models")
    [result] = build_repository(models, tmp_path / "repo")
    assert result.status == "OK", result.reason
    return models, tmp_path / "repo"


def test_the_manifest_records_the_sha256_of_every_file_of_a_version(built):
    _, repo = built
    record = json.loads((repo / "manifest.json").read_text())["models"]["linear"]["versions"]["1"]
    assert set(record["files"]) == {"model.onnx", "samples.npz"} and "pending" not in record
    assert repository_problems(repo) == {"linear": []}


def test_a_bytecode_cache_is_no_part_of_an_entry_and_a_server_deletes_it_before_it_starts(built):
    # Triton's Python stub writes __pycache__ beside the model.py it imports; a planted .pyc would
    # run instead of the checked source, so the cache is skipped by the hashes and deleted, not trusted.
    _, repo = built
    cache = repo / "linear" / "1" / "__pycache__"
    cache.mkdir()
    (cache / "model.cpython-311.pyc").write_bytes(b"planted")
    assert repository_problems(repo) == {"linear": []}
    assert drop_bytecode_caches(repo) == [cache] and not cache.exists()
    assert (repo / "linear" / "1" / "model.onnx").is_file()


def _change_one_weight(path: Path) -> None:
    model = onnx.load(str(path))
    weights = onnx.numpy_helper.to_array(model.graph.initializer[0]).copy()
    weights.flat[0] += 5e-5
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(weights, model.graph.initializer[0].name))
    onnx.save(model, str(path))


def _swap_model(path: Path) -> None:
    onnx_linear(path, batch=7)  # another valid model with the same tensors


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


TAMPERING = [
    ("one weight changed by 5e-5", "model.onnx", _change_one_weight),
    ("the model swapped for another valid one", "model.onnx", _swap_model),
    ("a flipped byte in the samples", "samples.npz", _flip_a_byte),
    ("a file added to the version", "notes.txt", lambda p: p.write_text("hello")),
    ("a file removed", "samples.npz", lambda p: p.unlink()),
]


@pytest.mark.parametrize("case, name, tamper", TAMPERING, ids=[c[0] for c in TAMPERING])
def test_tampering_is_found_by_check_repo_without_a_server(built, case, name, tamper):
    _, repo = built
    tamper(repo / "linear" / "1" / name)
    done = subprocess.run([VENV_BIN / "check-repo", str(repo), "--hashes-only"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"linear/1/{name}" in done.stdout


@pytest.mark.parametrize("case, name, tamper", TAMPERING[:3], ids=[c[0] for c in TAMPERING[:3]])
def test_serve_repo_refuses_a_tampered_entry_naming_the_file(built, case, name, tamper):
    _, repo = built
    tamper(repo / "linear" / "1" / name)
    done = subprocess.run([VENV_BIN / "serve-repo", str(repo), "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"refusing to serve 'linear': linear/1/{name}: changed since it was built" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("case, name, tamper", TAMPERING[:2], ids=[c[0] for c in TAMPERING[:2]])
def test_a_rebuild_of_a_tampered_entry_is_a_new_version_not_unchanged(built, case, name, tamper):
    models, repo = built
    tamper(repo / "linear" / "1" / name)
    [result] = build_repository(models, repo)
    assert (result.status, result.version) == ("OK", 2)


def test_check_repo_lists_a_version_the_manifest_does_not_know_and_build_repo_sets_it_aside(built):
    models, repo = built
    shutil.copytree(repo / "linear" / "1", repo / "linear" / "7")
    problems = repository_problems(repo)["linear"]
    assert problems == ["linear/7: on disk, not recorded in the manifest"]
    notes = []
    [result] = build_repository(models, repo, notice=notes.append)
    assert result.status == "UNCHANGED"
    assert len(notes) == 1 and notes[0].startswith("linear: version 7 is on disk but not in the manifest; moved out")
    assert versions(repo / "linear") == [1] and repository_problems(repo) == {"linear": []}


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from tritonforge.builder import BuildOptions, build_repository, pipeline, staging
where = sys.argv[3]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if where.startswith("before "):
    name = where.removeprefix("before ")
    def wrap(stage):
        def run(build):
            if stage.__name__ == name:
                die()
            return stage(build)
        return run
    pipeline.STAGES = tuple(wrap(s) for s in pipeline.STAGES)
else:  # inside the install of the model's version: "moving in" (before the rename) or "moved in" (after it)
    real = staging.install
    def install(repo, name, staged, version):
        if where == "moving in":
            die()
        real(repo, name, staged, version)
        die()
    staging.install = install
build_repository(Path(sys.argv[1]), Path(sys.argv[2]))
"""

WRITING_STAGES = [s.__name__ for s in STAGES[STAGES.index(next(s for s in STAGES if s.__name__ == "stage_version")):]]
KILL_POINTS = [f"before {name}" for name in WRITING_STAGES] + ["moving in", "moved in"]


@pytest.mark.slow
@pytest.mark.parametrize("where", KILL_POINTS)
def test_a_build_killed_at_any_stage_leaves_a_consistent_repository_that_the_next_build_repairs(built, tmp_path, where):
    models, repo = built
    _models(models, features=3)  # a changed model: the next build writes version 2
    done = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(models), str(repo), where],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == -9, done.stderr[-2000:]
    assert repository_problems(repo) == {"linear": []}, "a kill must leave the old state or the new one"
    on_disk = versions(repo / "linear")
    assert on_disk in ([1], [1, 2])
    notes = []
    [result] = build_repository(models, repo, notice=notes.append)
    assert result.ok, result.reason
    assert versions(repo / "linear") == _recorded(repo)
    assert repository_problems(repo) == {"linear": []}
    assert not list(repo.parent.glob(f".{repo.name}.staging-*")), "staging debris is removed"
    if where == "moved in":
        assert any("moved in complete by an interrupted build" in n for n in notes)
        assert result.status == "UNCHANGED" and result.version == 2
    elif where == "moving in":
        assert any("recorded but never moved in" in n for n in notes)
