"""Writing a repository safely: model names, fingerprints, the build lock, staging folders and atomic moves."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import BuildError
from ..repository.layout import CONFIG_FILE, MANIFEST_FILE

STAGING_PREFIX = ".staging-"
_ILLEGAL = re.compile(r"[^A-Za-z0-9_.-]")


def model_name(path: Path) -> str:
    """A legal Triton model name from a file stem (or folder name)."""
    stem = path.name if path.is_dir() else path.name.split(".")[0]
    name = _ILLEGAL.sub("_", stem).strip(".") or "model"
    return name if name[0].isalpha() or name[0] == "_" else f"m_{name}"


def fingerprint(paths: list[Path], extra: dict[str, Any]) -> str:
    """sha256 over the source file (or every file in a folder), the sidecar and the build settings."""
    digest = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for file in files:
            digest.update(str(file.relative_to(root.parent)).encode())
            with open(file, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    digest.update(json.dumps(extra, sort_keys=True).encode())
    return digest.hexdigest()


def outside(path: Path, src: Path, allowed: tuple[Path, ...]) -> Path | None:
    """Where a model file or folder really lies, when a symlink (its own or one inside a folder
    model) takes it out of the models folder and no --allow-outside covers it; else None."""
    roots = [src.resolve(), *(Path(a).resolve() for a in allowed)]
    for item in [path, *(path.rglob("*") if path.is_dir() and not path.is_symlink() else ())]:
        real = item.resolve()
        if not any(real == root or real.is_relative_to(root) for root in roots):
            return real
    return None


def check_output_folder(repo: Path) -> None:
    if repo.exists() and not repo.is_dir():
        raise BuildError(f"{repo}: the output path is a file, not a folder")
    if repo.is_dir() and any(repo.iterdir()) and not (repo / MANIFEST_FILE).is_file():
        entries = [p for p in repo.iterdir() if not p.name.startswith(".") and p.name != "README.md"]
        if entries and not all((p / CONFIG_FILE).is_file() for p in entries if p.is_dir()):
            raise BuildError(f"{repo}: is not empty and holds no {MANIFEST_FILE}; refusing to write into a folder that is not a model repository")


LOCK_FILE = ".tritonforge.lock"


@contextmanager
def exclusive(repo: Path) -> Iterator[None]:
    """One build at a time per repository: two would race on versions and the manifest.

    The lock file exists only while a build runs, and a repository folder this build created
    but wrote nothing into is removed again: a build that fails leaves the path as it found it.
    """
    import fcntl

    created = not repo.exists()
    repo.mkdir(parents=True, exist_ok=True)
    lock = repo / LOCK_FILE
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # The holder before us may have removed the file after we opened it: the lock we got
            # is then on a file nobody else sees, so it excludes nobody.
            if not lock.exists() or os.stat(lock).st_ino != os.fstat(handle.fileno()).st_ino:
                raise BlockingIOError
        except BlockingIOError:
            _remove_if_only_lock(repo, created, lock=None)
            raise BuildError(f"{repo}: another build-repo is writing this repository; wait for it to finish") from None
        try:
            yield
        finally:
            _remove_if_only_lock(repo, created, lock)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_if_only_lock(repo: Path, created: bool, lock: Path | None) -> None:
    if lock is not None:
        lock.unlink(missing_ok=True)
    if created:
        try:
            repo.rmdir()  # only when empty: anything built stays
        except OSError:
            pass


@contextmanager
def staging(repo: Path, name: str) -> Iterator[Path]:
    """A scratch folder beside the repository: on the same filesystem, so that moving it in is
    one rename, but outside it, so that a Triton polling the repository never sees it."""
    repo.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{repo.resolve().name}{STAGING_PREFIX}{name}-", dir=repo.resolve().parent))
    # mkdtemp makes 0700 folders and the mode survives the rename into place: a Triton running
    # as another user (the NGC image's) could not read the model. Use the umask, as mkdir does.
    os.chmod(path, 0o777 & ~_umask())
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def install(repo: Path, name: str, staged_model: Path, version: int) -> None:
    """Move a staged model in: the whole folder for a new model, else the new version then the config.

    Triton polling a repository sees either the old model or the complete new one.
    """
    target = repo / name
    staged_version = staged_model / str(version)
    if not target.exists():
        os.rename(staged_model, target)
        return
    if (target / str(version)).exists():
        raise BuildError(f"{name}: version {version} already exists; refusing to overwrite it")
    for item in staged_model.iterdir():  # labels, warmup data: replaced whole, one rename each
        if item.name in (str(version), CONFIG_FILE):
            continue
        old = target / item.name
        if old.is_dir():
            retired = target / f"{STAGING_PREFIX}{item.name}"
            shutil.rmtree(retired, ignore_errors=True)
            os.rename(old, retired)
            os.rename(item, old)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(item, old)
    os.rename(staged_version, target / str(version))
    os.replace(staged_model / CONFIG_FILE, target / CONFIG_FILE)
