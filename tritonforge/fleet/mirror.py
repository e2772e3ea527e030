"""A local folder kept in step with a published repository, for servers that cannot read object
storage themselves (the tritonserver in nvidia-pytriton has no S3 support).

The mirror follows the published index only (a file is listed there once it is in the bucket
whole) and checks every download against the sha256 listed; a file that does not match is being
replaced by a publish, and waits for the next round. It changes the folder in the publisher's
order: each new version downloaded into a staging folder and renamed into place (a poller never
sees half a version), then the models' other files, then their configs (only once every version
they name is here), then removals (configs of removed models first), the manifest last.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from tritonforge.repository import config as config_file
from tritonforge.repository.config import version_policy
from tritonforge.repository.layout import CONFIG_FILE, MANIFEST_FILE, versions

from .errors import FleetError
from .index import INDEX_FILE, Index
from .location import BucketUrl
from .store import Store
from .tree import config_order, models_of, part_of, versions_of

STATE_FILE = ".tritonforge-mirror.json"  # what this folder holds: {rel: sha256}, as downloaded
log = logging.getLogger("serve-repo")


@dataclass(frozen=True)
class SyncReport:
    changed: tuple[str, ...]  # versions (model/n) and files taken or removed
    waiting: tuple[str, ...]  # what a publish is still writing: taken on a later round

    def line(self) -> str:
        waiting = f"; waiting for {', '.join(self.waiting)}" if self.waiting else ""
        return f"{len(self.changed)} changes ({', '.join(self.changed) or 'none'}){waiting}"


class BucketMirror:
    """``BucketMirror("s3://models/repo", Path("local")).sync()`` makes ``local`` what is published.

    ``with_versions=False`` leaves version folders empty (a copy made to change configs only)."""

    def __init__(self, url: str | BucketUrl, local: Path, *, endpoint_url: str | None = None,
                 store: Store | None = None, with_versions: bool = True) -> None:
        self.url = url if isinstance(url, BucketUrl) else BucketUrl.parse(url)
        self.local = Path(local)
        self.store = store or Store(self.url, endpoint_url)
        self.with_versions = with_versions

    # ---- state -----------------------------------------------------------------------
    def _state(self) -> dict[str, str]:
        """What this folder holds, as synced; a folder with files but no state of this bucket is
        someone else's (a repository, another bucket's mirror) and is never written into."""
        path = self.local / STATE_FILE
        if not path.is_file():
            if self.local.is_dir() and any(self.local.iterdir()):
                raise FleetError(f"{self.local}: holds files not synced from {self.url}; give serve-repo an empty "
                                 f"or new --sync-dir (a folder it may change and delete in)")
            return {}
        try:
            state = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            state = {"source": str(self.url), "files": {}}  # taken again from the bucket, verified by hash
        if state.get("source") != str(self.url):
            raise FleetError(f"{self.local}: mirrors {state.get('source')}, not {self.url}; give another --sync-dir")
        return dict(state.get("files", {}))

    def _save(self, state: dict[str, str]) -> None:
        path = self.local / STATE_FILE
        temporary = path.with_name(f"{STATE_FILE}.tmp")
        temporary.write_text(json.dumps({"source": str(self.url), "files": state}, indent=1, sort_keys=True))
        os.replace(temporary, path)

    def published(self) -> dict[str, str]:
        raw = self.store.read(INDEX_FILE)
        if raw is None:
            raise FleetError(f"{self.url}: nothing published there (no {INDEX_FILE}); publish a repository with publish-repo first")
        return Index.from_bytes(raw, str(self.url)).files

    # ---- one round ---------------------------------------------------------------------
    def sync(self) -> SyncReport:
        state = self._state()
        remote = self.published()
        self.local.mkdir(parents=True, exist_ok=True)
        # A round cleans up after itself; folders still here are a stopped process's (one mirror per folder).
        for leftover in [*self.local.glob(".staging-*"), *self.local.glob(".retired-*")]:
            shutil.rmtree(leftover, ignore_errors=True)
        changed: list[str] = []
        waiting: list[str] = []
        for model in sorted(models_of(remote)):
            for version, files in sorted(versions_of(remote, model).items()):
                target = self.local / model / str(version)
                if not self.with_versions:
                    target.mkdir(parents=True, exist_ok=True)
                elif not (target.is_dir() and all(state.get(rel) == sha for rel, sha in files.items())):
                    (changed if self._take_version(files, target) else waiting).append(f"{model}/{version}")
                    if f"{model}/{version}" in changed:
                        state.update(files)
        for rel in sorted(rel for rel in remote if part_of(rel).kind in ("model", "other")):
            if state.get(rel) != remote[rel]:
                if self._take_files({rel: remote[rel]}):
                    state[rel] = remote[rel]
                    changed.append(rel)
                else:
                    waiting.append(rel)
        for model in sorted(models_of(remote)):
            configs = {rel: sha for rel, sha in remote.items() if part_of(rel).kind == "config" and part_of(rel).model == model}
            if any(state.get(rel) != sha for rel, sha in configs.items()):
                if self._take_files(configs, check=self._versions_here):
                    state.update(configs)
                    changed.append(f"{model} configs")
                else:
                    waiting.append(f"{model} configs")
        changed += self._remove(remote, state)
        if MANIFEST_FILE in remote and state.get(MANIFEST_FILE) != remote[MANIFEST_FILE]:
            if self._take_files({MANIFEST_FILE: remote[MANIFEST_FILE]}):
                state[MANIFEST_FILE] = remote[MANIFEST_FILE]
                changed.append(MANIFEST_FILE)
            else:
                waiting.append(MANIFEST_FILE)
        self._save(state)
        return SyncReport(tuple(changed), tuple(waiting))

    def _take_version(self, files: dict[str, str], target: Path) -> bool:
        staging = self.local / f".staging-{uuid.uuid4().hex[:12]}"
        try:
            for rel, sha in files.items():
                inside = rel.split("/", 2)[2]
                if not self.store.download(rel, staging / inside, sha):
                    return False
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():  # a folder left by an older copy: replaced whole
                aside = self.local / f".retired-{uuid.uuid4().hex[:12]}"
                os.rename(target, aside)
                shutil.rmtree(aside, ignore_errors=True)
            os.rename(staging, target)
            return True
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _take_files(self, files: dict[str, str], check=None) -> bool:
        """Download every file beside its place, then (when all match and ``check`` passes) rename
        each into place in config order: ``configs/<host>.pbtxt`` first, ``config.pbtxt`` last."""
        staged: list[tuple[Path, Path]] = []
        try:
            for rel in sorted(files, key=config_order):
                final = self.local / rel
                temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
                staged.append((temporary, final))
                if not self.store.download(rel, temporary, files[rel]):
                    return False
            if check is not None and not check(staged):
                return False
            for temporary, final in staged:
                os.replace(temporary, final)
            staged = []
            return True
        finally:
            for temporary, _ in staged:
                temporary.unlink(missing_ok=True)

    def _versions_here(self, staged) -> bool:
        """Configs wait until every version they name is in the folder, and a new model's until it has
        one (a promotion published while its version still downloads would otherwise make the
        server load a version it lacks)."""
        for temporary, final in staged:
            try:
                policy = version_policy(config_file.read(temporary))
            except config_file.ConfigError:
                return False
            model_dir = final.parent if final.name == CONFIG_FILE else final.parent.parent
            here = versions(model_dir)
            if not here or any(v not in here for v in policy.versions):
                log.info("mirror: %s waits for version(s) %s", final.relative_to(self.local), policy.versions)
                return False
        return True

    def _remove(self, remote: dict[str, str], state: dict[str, str]) -> list[str]:
        gone = [rel for rel in state if rel not in remote]
        removed = []
        # Configs first: a model without config.pbtxt is no model to the server, before its files go.
        for rel in sorted(gone, key=lambda r: part_of(r).kind != "config"):
            part = part_of(rel)
            if part.kind == "version":
                folder = self.local / part.model / str(part.version)
                if folder.is_dir() and part.version not in versions_of(remote, part.model):
                    aside = self.local / f".retired-{uuid.uuid4().hex[:12]}"
                    os.rename(folder, aside)
                    shutil.rmtree(aside, ignore_errors=True)
                    removed.append(f"{part.model}/{part.version} removed")
            else:
                (self.local / rel).unlink(missing_ok=True)
                removed.append(f"{rel} removed")
            state.pop(rel)
        for model in {part_of(rel).model for rel in gone if part_of(rel).model} - models_of(remote):
            shutil.rmtree(self.local / model, ignore_errors=True)
        return removed


class Follower:
    """Syncs a mirror every ``every`` seconds in a thread until stopped; a failed round is logged
    and tried again (the bucket may be briefly unreachable)."""

    def __init__(self, mirror: BucketMirror, every: float) -> None:
        self.mirror, self.every = mirror, every
        self.rounds = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bucket-mirror", daemon=True)

    def start(self) -> "Follower":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                report = self.mirror.sync()
                self.rounds += 1
                self.last_error = None
                if report.changed or report.waiting:
                    log.info("mirror %s: %s", self.mirror.url, report.line())
            except Exception as exc:  # keep following: the next round may reach the bucket
                if str(exc) != self.last_error:  # said once, not every round while it lasts
                    log.warning("mirror %s: %s", self.mirror.url, exc)
                self.last_error = str(exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
