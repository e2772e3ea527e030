"""The build: discover, then each model through :data:`.stages.STAGES`:
load -> convert -> verify -> configure (validate: each config is parsed back) -> write -> report.

``build_repository`` is the library entry point; ``build-repo`` is a thin CLI over it.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..converters.probe import one_line
from ..errors import BuildError
from ..repository.manifest import Manifest, ManifestError
from ..sidecar import FOLDER_SIDECAR, SIDECAR_SUFFIXES, FolderSidecars, referenced_files
from . import staging
from .model_build import DEFAULT_MAX_BATCH_SIZE, BuildContext, BuildOptions, ModelBuild, ModelSource
from .releases import parse_release
from .repair import repair
from .results import BuildResult, Status
from .stages import STAGES
from .validate import TritonValidator

__all__ = ["DEFAULT_MAX_BATCH_SIZE", "BuildOptions", "ModelSource", "build_repository", "discover"]

Progress = Callable[[int, int, str], None]  # (index, total, model name) as a model starts
Finished = Callable[[BuildResult], None]  # each result as its model finishes
Notice = Callable[[str], None]  # a repair made before building (one line each)


def discover(src: Path) -> tuple[list[ModelSource], list[BuildResult]]:
    """Every file or folder in ``src`` is one model, except sidecars and the files they name."""
    if not src.is_dir():
        raise BuildError(f"{src}: the input folder does not exist")
    entries = sorted(p for p in src.iterdir() if not p.name.startswith(".") and p.name != FOLDER_SIDECAR)
    sidecars = {p.stem: p for p in entries if p.is_file() and p.suffix in SIDECAR_SUFFIXES}
    referenced = referenced_files(src, list(sidecars.values()) + [src / FOLDER_SIDECAR])
    candidates = [p for p in entries if p.suffix not in SIDECAR_SUFFIXES and p.resolve() not in referenced
                  and not p.name.endswith(".onnx.data")]
    by_name: dict[str, list[Path]] = {}
    for path in candidates:
        by_name.setdefault(staging.model_name(path), []).append(path)
    sources, clashes = [], []
    for name, paths in sorted(by_name.items()):
        if len(paths) > 1:  # one line for the clash, naming every file in it
            files = " and ".join(p.name for p in paths)
            clashes.append(BuildResult(name, files, reason=f"name clash: {files} would both become model '{name}'; rename one"))
            continue
        own = sidecars.get(paths[0].name.split(".")[0]) or sidecars.get(paths[0].stem)
        sources.append(ModelSource(name, paths[0], own))
    clashed = {staging.model_name(p) for paths in by_name.values() if len(paths) > 1 for p in paths}
    orphans = set(sidecars.values()) - {s.sidecar for s in sources} - {p for p in sidecars.values() if staging.model_name(p) in clashed}
    for path in sorted(orphans):
        clashes.append(BuildResult(path.stem, path.name, reason=f"{path.name}: sidecar for a model that is not in the folder"))
    return sources, clashes


def build_repository(src: Path, dst: Path, options: BuildOptions = BuildOptions(),
                     progress: Progress | None = None, finished: Finished | None = None,
                     notice: Notice | None = None) -> list[BuildResult]:
    """Build every model in ``src`` into the Triton repository ``dst``; one result per entry, by name.

    A model that fails leaves the repository as it was; the others are still built.
    """
    src, dst = Path(src), Path(dst)
    release = parse_release(options.triton_version)
    staging.check_output_folder(dst)
    only = None
    if src.is_file():  # one model file: build it alone, with its sidecar beside it
        src, only = src.parent, staging.model_name(src)
    sources, results = discover(src)
    sidecars = FolderSidecars(src, options.allow_outside)
    sidecars.refuse_unknown_models({s.name for s in sources} | {r.name for r in results})
    if only is not None:
        sources = [s for s in sources if s.name == only]
        results = [r for r in results if r.name == only]
    for result in results if finished else ():
        finished(result)
    with staging.exclusive(dst):
        try:
            manifest = Manifest(dst)
        except ManifestError as exc:
            raise BuildError(str(exc)) from None
        for note in repair(dst, manifest):
            if notice:
                notice(note)
        validator = TritonValidator() if options.validate and sources else None
        context = BuildContext(dst, manifest, options, release, sidecars, validator)
        try:
            for index, source in enumerate(sources, 1):
                if progress:
                    progress(index, len(sources), source.name)
                for result in build_model(source, context):
                    results.append(result)
                    if finished:
                        finished(result)
        finally:
            if validator is not None:
                validator.close()
    return sorted(results, key=lambda r: r.name)


def build_model(source: ModelSource, context: BuildContext) -> list[BuildResult]:
    """One model through the stages; a failure is one FAILED line naming the file, and the
    repository keeps what it had (staging folders are removed, nothing was moved in)."""
    started = time.perf_counter()
    build = ModelBuild(source, context)
    try:
        with build.cleanup:
            for stage in STAGES:
                build = stage(build)
                if build.finished:
                    break
        results = build.results
    except BuildError as exc:
        results = [BuildResult(source.name, source.path.name, reason=str(exc))]
    except Exception as exc:  # a converter's own failure: still one line, still the next model
        results = [BuildResult(source.name, source.path.name, reason=f"{type(exc).__name__}: {one_line(exc)}")]
    seconds = time.perf_counter() - started
    return [replace(r, reason=_named(r, source), seconds=seconds) for r in results]


def _named(result: BuildResult, source: ModelSource) -> str:
    if result.status == Status.FAILED and not result.reason.startswith(source.path.name):
        return f"{source.path.name}: {result.reason}"
    return result.reason
