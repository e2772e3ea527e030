"""What every entry writes beside its version folders, and facts the build records of it."""
from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

import numpy as np

from .. import verify
from ..ensembles import Entry
from ..repository import SAMPLES_FILE, Samples, Signature, versions, write_samples
from ..repository import config as config_file
from ..repository.integrity import file_hashes
from ..repository.layout import CONFIG_FILE, LABELS_FILE, WARMUP_DIR, warmup_file
from . import staging

TOOLS = ("tritonforge", "onnx", "onnxruntime", "skl2onnx", "onnxmltools", "tf2onnx", "tensorflow", "keras",
         "torch", "scikit-learn", "xgboost", "lightgbm", "treelite")


def write_model_files(staged: Path, model_config, variants: dict, kept: dict[str, str], labels: tuple[str, ...] | None,
                       samples: dict[str, np.ndarray], signature: Signature) -> None:
    """The configs, the labels file and the warmup rows beside the version folder."""
    config_file.write_model(staged, model_config, variants, kept)
    if labels:
        (staged / LABELS_FILE).write_text("\n".join(labels) + "\n")
    if model_config.model_warmup:
        warm = staged / WARMUP_DIR
        warm.mkdir()
        for index, spec in enumerate(signature.inputs):
            (warm / warmup_file(index)).write_bytes(config_file.warmup_bytes(samples[spec.name][0]))


def are_probabilities(scores: np.ndarray | None) -> bool:
    if scores is None or scores.dtype.kind != "f":
        return False
    return bool(np.all(scores >= 0) and np.all(scores <= 1) and np.allclose(scores.sum(axis=-1), 1, atol=1e-3))


def tool_versions() -> dict[str, str]:
    found = {}
    for name in TOOLS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def write_entry(repo: Path, entry: Entry, before_install) -> int:
    """A step or ensemble entry: its next version folder with its model.py or samples, and its config.
    ``before_install(version, file hashes)`` records the version before it is moved in."""
    version = (versions(repo / entry.name) or [0])[-1] + 1
    with staging.staging(repo, entry.name) as staged:
        stage_entry(staged, entry, version)
        before_install(version, file_hashes(staged / str(version)))
        staging.install(repo, entry.name, staged, version)
    return version


def stage_entry(staged: Path, entry: Entry, version: int) -> None:
    """An entry's files in the folder ``staged``: the version folder (model.py or the files it
    names, requirements, samples), the labels and the config."""
    version_dir = staged / str(version)
    version_dir.mkdir()
    if entry.template:
        shutil.copyfile(entry.template, version_dir / "model.py")
    for name, path in entry.files:
        shutil.copyfile(path, version_dir / name)
    if entry.requirements:  # for the image that serves it (deploy/triton/Dockerfile)
        (version_dir / "requirements.txt").write_text("\n".join(entry.requirements) + "\n")
    if entry.samples:
        inputs, outputs = entry.samples
        write_samples(version_dir / SAMPLES_FILE, Samples(inputs, outputs, verify.DEFAULT_ATOL, verify.DEFAULT_RTOL))
    if entry.labels:  # an ensemble's label_filename is read from its own folder, as a model's is
        (staged / LABELS_FILE).write_text("\n".join(entry.labels) + "\n")
    config_file.write(staged / CONFIG_FILE, entry.config)
