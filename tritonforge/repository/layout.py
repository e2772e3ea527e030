"""File and folder names of a model repository, and the folders Triton reads as models and versions."""
from __future__ import annotations

from pathlib import Path

CONFIG_FILE = "config.pbtxt"
CONFIGS_DIR = "configs"  # per-hardware variants: configs/<name>.pbtxt, picked with --model-config-name
MANIFEST_FILE = "manifest.json"
SAMPLES_FILE = "samples.npz"
LABELS_FILE = "labels.txt"
WARMUP_DIR = "warmup"
# A config parameter (comma-separated input names) where serve-repo's backends answer a NaN with
# 400 because the source model cannot take one; Triton's own backends ignore the key.
REFUSE_NAN_PARAMETER = "tritonforge_refuse_nan"


def model_folders(repo: Path) -> list[str]:
    """Model folders as Triton sees them: every sub-folder holding a config.pbtxt."""
    return sorted(p.name for p in Path(repo).iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file())


def versions(model_dir: Path) -> list[int]:
    """Version folders in ascending order (Triton ignores names that are not positive integers)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and not p.name.startswith("0"))


def config_files(model_dir: Path) -> list[Path]:
    """Every config file of a model: ``config.pbtxt``, then each ``configs/<name>.pbtxt`` variant
    (what ``--model-config-name`` picks), so a setting that must hold wherever the model is served
    is written to all of them."""
    model_dir = Path(model_dir)
    return [model_dir / CONFIG_FILE, *sorted((model_dir / CONFIGS_DIR).glob("*.pbtxt"))]


def variant_path(model_dir: Path, name: str) -> Path:
    """``configs/<name>.pbtxt`` of a model folder: the config ``--model-config-name <name>`` loads."""
    return Path(model_dir) / CONFIGS_DIR / f"{name}.pbtxt"


def warmup_file(index: int) -> str:
    """The warmup data file of the index-th input, inside WARMUP_DIR."""
    return f"input_{index}"
