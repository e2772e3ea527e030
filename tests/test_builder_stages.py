"""The builder's shape: one model's build is one value handed through a list of small stage
functions, and the sidecar module alone knows the sidecar's keys."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from tritonforge import converters, sidecar
from tritonforge.builder import Status, pipeline, stages
from tritonforge.converters import precision

ROOT = Path(__file__).resolve().parents[1]
BUILDER = ROOT / "tritonforge" / "builder"
MAX_FUNCTION_LINES = 50


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


@pytest.mark.parametrize("path", sorted(BUILDER.glob("*.py")), ids=lambda p: p.name)
def test_no_builder_function_is_longer_than_a_screen(path):
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in _functions(path)
            if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def test_the_stage_list_is_the_builds_only_path():
    """No stage is called by name anywhere in the builder: the runner walks STAGES, so the list
    reads as the build does."""
    names = {stage.__name__ for stage in stages.STAGES}
    called = set()
    for path in BUILDER.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name):
                    called.add(func.id)
                elif isinstance(func, ast.Attribute) and getattr(func.value, "id", None) == "stages":
                    called.add(func.attr)
    assert names & called == set()
    assert all(stage.__module__ == stages.__name__ for stage in stages.STAGES)
    source = Path(pipeline.__file__).read_text()
    assert "for stage in STAGES" in source


def test_only_the_sidecar_module_reads_sidecar_yaml():
    readers = sorted(str(p.relative_to(ROOT)) for folder in ("tritonforge", "converters", "ensembles", "serving")
                     for p in (ROOT / folder).rglob("*.py")
                     if p.name != "sidecar.py" and "read_yaml(" in p.read_text())
    assert readers == []


def test_format_and_precision_names_agree_with_their_registries():
    assert sidecar.FORMATS == tuple(converters.FORMATS)
    assert set(sidecar.PRECISIONS) == {"fp32", *precision.PRECISIONS}


def test_every_build_status_is_a_member_of_the_enum():
    assert {s.value for s in Status} == {"OK", "UNCHANGED", "FAILED", "SKIPPED"}


FILE_KEYS = sorted(key for key, spec in sidecar.KEYS.items() if spec.names_file)


def _named(key: str, folder: Path) -> str:
    """A sidecar line for ``key`` that names a file in ``folder``, and the file."""
    if key in ("samples", "calibration"):
        np.savez(folder / "rows.npz", **{"input/x": np.zeros((2, 3), np.float32)})
        return f"{key}: rows.npz"
    if key == "labels":
        (folder / "names.txt").write_text("a\nb\n")
        return "labels: names.txt"
    (folder / "code.py").write_text("pass\n")
    return f"{key}: {{step: user, file: code.py}}"


def test_the_file_keys_are_the_ones_a_user_can_name_files_with():
    assert FILE_KEYS == ["calibration", "labels", "postprocess", "preprocess", "samples"]


@pytest.mark.parametrize("key", FILE_KEYS)
@pytest.mark.parametrize("where", ["own", "folder"])
def test_a_file_a_sidecar_names_is_not_discovered_as_a_model(tmp_path, key, where):
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    line = _named(key, tmp_path)
    if where == "own":
        (tmp_path / "model.yaml").write_text(line + "\n")
    else:
        (tmp_path / "tritonforge.yaml").write_text("models:\n  model:\n    " + line + "\n")
    sources, refused = pipeline.discover(tmp_path)
    assert [s.name for s in sources] == ["model"] and refused == []


def test_a_folder_sidecar_naming_no_model_is_refused_with_the_key(tmp_path):
    from tritonforge.builder import build_repository
    from tritonforge.errors import BuildError

    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "tritonforge.yaml").write_text("models:\n  ../../evil: {max_batch_size: 4}\n")
    with pytest.raises(BuildError, match=r"tritonforge.yaml: 'models\.'\.\./\.\./evil'' names no model"):
        build_repository(tmp_path, tmp_path.parent / "repo")
    assert not (tmp_path.parent / "repo").exists()
