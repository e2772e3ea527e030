"""Promotion and rollback: set which versions a model serves, in every config it has, and record it."""
from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tritonforge.builder.staging import exclusive
from tritonforge.errors import BuildError
from tritonforge.repository import config as config_file
from tritonforge.repository import model_folders, versions
from tritonforge.repository.config import VersionPolicy, version_policy, with_version_policy
from tritonforge.repository.layout import MANIFEST_FILE, config_files
from tritonforge.repository.manifest import Manifest, ManifestError

from .errors import VersionsError
from .spec import parse_serve

COMMAND = "repo-versions"


@dataclass(frozen=True)
class Change:
    """What one ``serve_versions`` call did: ``files`` is empty when the model already served ``policy``."""

    model: str
    previous: VersionPolicy
    policy: VersionPolicy
    served: tuple[int, ...]
    files: tuple[Path, ...]
    record: dict | None


def serve_versions(repo: Path, model: str, serve: str | VersionPolicy, *, why: str | None = None,
                   by: str | None = None) -> Change:
    """Make ``model`` serve ``serve`` (``"latest"``, ``"2"``, ``"1,2"``, ``"all"`` or a policy).

    Every config of the model (``config.pbtxt`` and each ``configs/<name>.pbtxt``, whichever one
    ``--model-config-name`` picks) gets the same policy; each file is written beside and renamed into
    place, so a polling Triton reloads the model whole. The manifest records the policy with who
    (``user@host``), when and why. Refused with :class:`VersionsError`, before anything is written,
    when the model or a named version does not exist, or a build is writing the repository.
    """
    repo = Path(repo)
    model_dir = model_dir_of(repo, model)
    policy = parse_serve(model, serve) if isinstance(serve, str) else serve
    try:
        with exclusive(repo):  # build-repo's lock: a build moving a version in, or a second change, waits its turn
            return _change(repo, model, model_dir, policy, why, by or who())
    except BuildError as exc:
        raise VersionsError(f"model '{model}': {repo} is being written by another command ({exc}); nothing changed") from None


def _change(repo: Path, model: str, model_dir: Path, policy: VersionPolicy, why: str | None, by: str) -> Change:
    on_disk = versions(model_dir)
    missing = [v for v in policy.versions if v not in on_disk]
    if missing or not on_disk:
        which = f"version {', '.join(map(str, missing))}" if missing else "version folder"
        raise VersionsError(f"model '{model}' has no {which} (on disk: {_listed(on_disk)}); nothing changed")
    try:
        manifest = Manifest(repo)
        files = config_files(model_dir)
        configs = {path: config_file.read(path) for path in files}
    except (ManifestError, config_file.ConfigError) as exc:
        raise VersionsError(f"model '{model}': {exc}; nothing changed") from None
    if manifest.entry(model) is None:
        raise VersionsError(f"model '{model}' is not in {repo / MANIFEST_FILE}; nothing changed")
    previous = version_policy(configs[files[0]])
    served = tuple(policy.served(on_disk))
    if all(version_policy(c) == policy for c in configs.values()):
        return Change(model, previous, policy, served, (), None)
    config_file.write_together({path: with_version_policy(c, policy) for path, c in configs.items()})
    record = {"policy": policy.as_dict(), "served": list(served), "previous": str(previous), "by": by,
              "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "why": why, "command": COMMAND}
    manifest.record_serving(model, record)
    manifest.save()
    return Change(model, previous, policy, served, tuple(files), record)


def model_dir_of(repo: Path, model: str) -> Path:
    if not repo.is_dir():
        raise VersionsError(f"model '{model}': no repository {repo}")
    names = model_folders(repo)
    if model not in names:  # also keeps a name such as ../x from leaving the repository
        raise VersionsError(f"model '{model}': no such model in {repo} (models: {', '.join(names) or 'none'})")
    return repo / model


def who() -> str:
    """``user@host`` of the person (or CI job) making the change."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _listed(numbers) -> str:
    return ", ".join(map(str, numbers)) or "none"
