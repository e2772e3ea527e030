"""What an interrupted build left, found and put right before the next one writes anything.

A build records a version in the manifest before it moves the version in, so a kill leaves at
worst a recorded version that is missing on disk, and staging folders beside the repository. A
version on disk that the manifest does not record was not written by a build (or is from a
tritonforge that recorded afterwards): it is moved out of the repository, never deleted, so that
a polling Triton cannot serve it as the latest version."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..repository import versions
from ..repository.integrity import version_problems
from ..repository.manifest import Manifest
from .staging import STAGING_PREFIX

SET_ASIDE = ".unrecorded-"


def repair(repo: Path, manifest: Manifest) -> list[str]:
    """Put the repository and its manifest back in step; one line per thing done (saved already)."""
    notes = _staging_debris(repo)
    changed = False
    for name in sorted(manifest.data["models"]):
        entry = manifest.entry(name)
        for version in sorted((int(v) for v in entry["versions"]), reverse=True):
            pending = entry["versions"][str(version)].get("pending")
            if not (repo / name / str(version)).is_dir():
                manifest.drop_version(name, version)
                notes.append(f"{name}: version {version} was recorded but never moved in (an interrupted build); record dropped")
                changed = True
            elif pending and not version_problems(repo / name, version, entry["versions"][str(version)].get("files")):
                manifest.settle(name, version)
                notes.append(f"{name}: version {version} was moved in complete by an interrupted build; its files verified, recorded")
                changed = True
        recorded = {int(v) for v in (manifest.entry(name) or {}).get("versions", {})}
        for version in versions(repo / name):
            if version not in recorded and manifest.entry(name) is not None:
                target = repo.resolve().parent / f".{repo.resolve().name}{SET_ASIDE}{name}-{version}-{int(time.time())}"
                os.rename(repo / name / str(version), target)
                notes.append(f"{name}: version {version} is on disk but not in the manifest; moved out of the repository to {target}")
    if changed:
        manifest.save()
    return notes


def _staging_debris(repo: Path) -> list[str]:
    """Staging folders of this repository (only builds make them; the lock says none runs now)."""
    parent = repo.resolve().parent
    debris = sorted(parent.glob(f".{repo.resolve().name}{STAGING_PREFIX}*"))
    for folder in debris:
        shutil.rmtree(folder, ignore_errors=True)
    return [f"removed {len(debris)} staging folder(s) an interrupted build left beside the repository"] if debris else []
