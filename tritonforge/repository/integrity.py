"""What the manifest guarantees of the files on disk: every file of every recorded version, by
sha256, and no version on disk that it does not record. Read by build-repo (repair, rebuilds),
check-repo (``--hashes-only``) and serve-repo (refuses a tampered entry)."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from .layout import versions
from .manifest import Manifest

CHUNK = 1 << 20
# Python's bytecode cache. Triton's Python backend stub imports a step's model.py from its version
# folder and writes one there; it starts Python isolated, so PYTHONDONTWRITEBYTECODE cannot stop it.
# It is no part of the entry: hashes skip it, and a server deletes it before it starts
# (drop_bytecode_caches), so the stub always compiles the model.py whose sha256 was checked and a
# planted .pyc (one claiming model.py's size and time) never runs.
BYTECODE_CACHE = "__pycache__"


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` but bytecode caches, by path relative to it
    (``/``-separated), sorted."""
    folder = Path(folder)
    found = {}
    files = (p for p in folder.rglob("*") if p.is_file() and BYTECODE_CACHE not in p.relative_to(folder).parts)
    for path in sorted(files):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                digest.update(chunk)
        found[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return found


def drop_bytecode_caches(repo: Path) -> list[Path]:
    """Delete the bytecode caches in the version folders of ``repo``'s entries; the ones deleted."""
    caches = [path for path in Path(repo).glob(f"*/*/**/{BYTECODE_CACHE}") if path.is_dir()]
    for path in caches:
        shutil.rmtree(path, ignore_errors=True)
    return caches


def version_problems(model_dir: Path, version: int, recorded: dict[str, str] | None) -> list[str]:
    """How version ``version`` of a model differs from its recorded files; [] when it is exact.
    A version recorded before hashes were kept (``recorded`` None) cannot be checked: one line says so."""
    folder = Path(model_dir) / str(version)
    name = Path(model_dir).name
    if not folder.is_dir():
        return [f"{name}/{version}: recorded in the manifest, missing on disk"]
    if recorded is None:
        return []
    actual = file_hashes(folder)
    problems = [f"{name}/{version}/{path}: missing" for path in sorted(set(recorded) - set(actual))]
    problems += [f"{name}/{version}/{path}: not built by tritonforge (not in the manifest)" for path in sorted(set(actual) - set(recorded))]
    problems += [f"{name}/{version}/{path}: changed since it was built (sha256 differs from the manifest)"
                 for path in sorted(set(actual) & set(recorded)) if actual[path] != recorded[path]]
    return problems


def entry_problems(repo: Path, manifest: Manifest, name: str) -> list[str]:
    """Every difference between entry ``name`` on disk and its manifest record: changed, missing or
    extra files of a recorded version, and versions on disk the manifest does not record."""
    entry = manifest.entry(name)
    model_dir = Path(repo) / name
    if entry is None:
        return [f"{name}: not in the manifest"]
    problems = []
    for version, record in sorted(entry["versions"].items(), key=lambda item: int(item[0])):
        if record.get("pending") and not (model_dir / version).exists():
            continue  # a build stopped before moving it in: the old state, which the next build tidies
        problems += version_problems(model_dir, int(version), record.get("files"))
    recorded = {int(v) for v in entry["versions"]}
    problems += [f"{name}/{v}: on disk, not recorded in the manifest" for v in versions(model_dir) if v not in recorded]
    return problems


def repository_problems(repo: Path, names=None) -> dict[str, list[str]]:
    """Problems of every entry the manifest records (or of ``names``), [] for an exact one."""
    manifest = Manifest(repo)
    wanted = names if names is not None else sorted(manifest.data["models"])
    return {name: entry_problems(repo, manifest, name) for name in wanted}
