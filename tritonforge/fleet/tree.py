"""The files of a repository as the fleet moves them: relative paths, content hashes, and what
part each file plays for a Triton that polls (a version's file, a config, the manifest, ...)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tritonforge.repository.layout import CONFIG_FILE, CONFIGS_DIR, MANIFEST_FILE

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def local_files(repo: Path) -> dict[str, Path]:
    """Every file of the repository by relative path ('/'-separated). Hidden names are left out at
    any depth: build-repo's lock file, files being written beside their target, staging folders."""
    repo = Path(repo)
    found = {}
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            found[rel.as_posix()] = path
    return found


def local_hashes(repo: Path) -> dict[str, str]:
    """sha256 of every file. (When the manifest records per-file hashes, they can be read from there.)"""
    return {rel: sha256_file(path) for rel, path in local_files(repo).items()}


@dataclass(frozen=True)
class Part:
    """What a file is to Triton: ``version`` (inside ``<model>/<n>/``), ``config`` (``config.pbtxt``,
    ``configs/*.pbtxt``), ``model`` (another file of a model folder: labels, warmup), ``manifest``,
    or ``other`` (a file at the top)."""

    kind: str
    model: str | None = None
    version: int | None = None


def part_of(rel: str) -> Part:
    parts = rel.split("/")
    if rel == MANIFEST_FILE:
        return Part("manifest")
    if len(parts) == 1:
        return Part("other")
    model = parts[0]
    # Triton reads version folders named by positive integers without leading zeros.
    if len(parts) >= 3 and parts[1].isdigit() and not parts[1].startswith("0"):
        return Part("version", model, int(parts[1]))
    if parts[1:] == [CONFIG_FILE] or (len(parts) == 3 and parts[1] == CONFIGS_DIR and parts[2].endswith(".pbtxt")):
        return Part("config", model)
    return Part("model", model)


def config_order(rel: str) -> tuple:
    """``configs/<host>.pbtxt`` before ``config.pbtxt``: the one Triton reads without --model-config-name comes last."""
    return (rel.split("/")[0], rel.endswith("/" + CONFIG_FILE), rel)


def versions_of(files, model: str) -> dict[int, dict[str, str]]:
    """{version: {rel: sha}} of one model among ``files`` ({rel: sha})."""
    found: dict[int, dict[str, str]] = {}
    for rel, sha in files.items():
        part = part_of(rel)
        if part.kind == "version" and part.model == model:
            found.setdefault(part.version, {})[rel] = sha
    return found


def models_of(files) -> set[str]:
    return {part_of(rel).model for rel in files if part_of(rel).model is not None}
