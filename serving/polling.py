"""Poll mode: rescan the repository and load, reload or unload what changed on disk."""
from __future__ import annotations

import logging
from pathlib import Path

from tritonforge.repository import CONFIG_FILE, model_folders
from tritonforge.repository.layout import CONFIGS_DIR
from tritonforge.serving.errors import ServeError
from tritonforge.serving.loading import ModelLoader

log = logging.getLogger("serve-repo")


def fingerprint(model_dir: Path):
    """What poll mode watches: the config files and the set of version folders."""
    try:
        configs = [model_dir / CONFIG_FILE, *sorted((model_dir / CONFIGS_DIR).glob("*.pbtxt"))]
        stats = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in configs if p.is_file())
        versions = sorted(p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    except OSError:
        return None
    return (stats, tuple(versions))


class RepositoryPoller:
    """Follows one repository: a version moved in, a config changed, a model removed."""

    def __init__(self, repo: Path, loader: ModelLoader) -> None:
        self.repo = repo
        self.loader = loader
        self.seen: dict[str, tuple] = {}

    def remember_all(self) -> None:
        for name in model_folders(self.repo):
            self.seen[name] = fingerprint(self.repo / name)

    def poll(self) -> None:
        current = {name: fingerprint(self.repo / name) for name in model_folders(self.repo)}
        # Ensembles last: their steps and models must be loaded first.
        for name, fp in sorted(current.items(), key=lambda item: (self.loader.is_ensemble(item[0]), item[0])):
            if fp is None or self.seen.get(name) == fp:
                continue
            before = self.seen.get(name)
            self.seen[name] = fp
            try:
                self.loader.load(name)
                log.info("poll: model '%s' %s", name, "loaded" if before is None else "reloaded (changed on disk)")
            except ServeError as exc:
                log.error("poll: %s", exc)
        for name in set(self.seen) - set(current):
            self.seen.pop(name)
            try:
                self.loader.unload(name)
                log.info("poll: model '%s' unloaded (gone from the repository)", name)
            except Exception as exc:
                log.error("poll: model '%s' failed to unload: %s", name, exc)
