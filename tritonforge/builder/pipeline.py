"""The build: discover -> load -> convert -> verify -> write -> configure -> validate -> report.

``build_repository`` is the library entry point; ``build-repo`` is a thin CLI over it.
"""
from __future__ import annotations

import functools
import shutil
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from .. import converters, ensembles, verify
from ..converters.precision import fingerprint_key as precision_key
from ..converters.probe import FileProbe, one_line
from ..ensembles import Entry, ModelFacts
from ..errors import BuildError
from ..repository import SAMPLES_FILE, Samples, Signature, read_samples, versions, write_samples
from ..repository import config as config_file
from ..repository.layout import CONFIG_FILE, CONFIGS_DIR, LABELS_FILE
from ..repository.manifest import Manifest, ManifestError
from ..sidecar import FOLDER_SIDECAR, SIDECAR_SUFFIXES, FolderSidecars, Sidecar, read_yaml
from ..verify import OutputError
from . import configure, reduced, staging
from .files import are_probabilities, tool_versions, write_model_files
from .releases import DEFAULT_RELEASE, parse_release
from .results import BuildResult

DEFAULT_MAX_BATCH_SIZE = 64


@dataclass(frozen=True)
class BuildOptions:
    format: str | None = None  # default target format where the framework supports it; else ONNX
    device: str = "auto"  # auto | cpu | gpu
    allow_pickle: bool = False
    triton_version: str = DEFAULT_RELEASE
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    warmup: bool = True
    allow_outside: tuple[Path, ...] = ()  # folders sidecar paths and model symlinks may point into
    precisions: tuple[str, ...] = ()  # reduced-precision entries for every model: int8, fp16


@dataclass(frozen=True)
class ModelSource:
    name: str
    path: Path
    sidecar: Path | None


Progress = Callable[[int, int, str], None]


def discover(src: Path) -> tuple[list[ModelSource], list[BuildResult]]:
    """Every file or folder in ``src`` is one model, except sidecars and the files they point to."""
    if not src.is_dir():
        raise BuildError(f"{src}: the input folder does not exist")
    entries = sorted(p for p in src.iterdir() if not p.name.startswith(".") and p.name != FOLDER_SIDECAR)
    sidecars = {p.stem: p for p in entries if p.is_file() and p.suffix in SIDECAR_SUFFIXES}
    referenced = _referenced_files(src, list(sidecars.values()) + [src / FOLDER_SIDECAR])
    candidates = [p for p in entries if p.suffix not in SIDECAR_SUFFIXES and p.resolve() not in referenced
                  and not p.name.endswith(".onnx.data")]
    by_name: dict[str, list[Path]] = {}
    for path in candidates:
        by_name.setdefault(staging.model_name(path), []).append(path)
    sources, clashes = [], []
    for name, paths in sorted(by_name.items()):
        if len(paths) > 1:
            files = " and ".join(p.name for p in paths)
            for path in paths:
                clashes.append(BuildResult(name, path.name, reason=f"name clash: {files} would both become model '{name}'; rename one"))
            continue
        own = sidecars.get(paths[0].name.split(".")[0]) or sidecars.get(paths[0].stem)
        sources.append(ModelSource(name, paths[0], own))
    orphans = set(sidecars.values()) - {s.sidecar for s in sources} - {p for p in sidecars.values() if any(c.path.name.split(".")[0] == p.stem for c in clashes)}
    for path in sorted(orphans):
        clashes.append(BuildResult(path.stem, path.name, reason=f"{path.name}: sidecar for a model that is not in the folder"))
    return sources, clashes


def _referenced_files(src: Path, sidecars: list[Path]) -> set[Path]:
    """Sample, label and user-step files that sidecars name are not models."""
    found = set()
    for path in sidecars:
        try:
            raw = read_yaml(path) if path.is_file() else None
        except BuildError:
            continue  # refused with its reason when the model's sidecar is read
        blocks = [raw] if isinstance(raw, dict) else []
        if isinstance(raw, dict):
            blocks += [raw.get("defaults")] + list((raw.get("models") or {}).values() if isinstance(raw.get("models"), dict) else [])
        for block in blocks:
            if isinstance(block, dict):
                steps = [block.get(role) for role in ("preprocess", "postprocess")]
                for holder, key in [(block, "samples"), (block, "labels")] + [(step, "file") for step in steps]:
                    if isinstance(holder, dict) and isinstance(holder.get(key), str):
                        found.add((path.parent / holder[key]).resolve())
    return found


def _outside(path: Path, src: Path, allowed: tuple[Path, ...]) -> Path | None:
    """Where a model file or folder really lies, when a symlink (its own or one inside a folder
    model) takes it out of the models folder and no --allow-outside covers it; else None."""
    roots = [src.resolve(), *(Path(a).resolve() for a in allowed)]
    for item in [path, *(path.rglob("*") if path.is_dir() and not path.is_symlink() else ())]:
        real = item.resolve()
        if not any(real == root or real.is_relative_to(root) for root in roots):
            return real
    return None


def build_repository(src: Path, dst: Path, options: BuildOptions = BuildOptions(),
                     progress: Progress | None = None) -> list[BuildResult]:
    """Build every model in ``src`` into the Triton repository ``dst``; one result per model.

    A model that fails leaves the repository as it was; the others are still built.
    """
    src, dst = Path(src), Path(dst)
    release = parse_release(options.triton_version)
    staging.check_output_folder(dst)
    only = None
    if src.is_file():  # one model file: build it alone, with its sidecar beside it
        src, only = src.parent, staging.model_name(src)
    sources, results = discover(src)
    if only is not None:
        sources = [s for s in sources if s.name == only]
        results = [r for r in results if r.name == only]
    sidecars = FolderSidecars(src, options.allow_outside)
    with staging.exclusive(dst):
        try:
            manifest = Manifest(dst)
        except ManifestError as exc:
            raise BuildError(str(exc)) from None
        return _build_all(sources, results, sidecars, manifest, dst, options, release, progress)


def _build_all(sources: list[ModelSource], results: list[BuildResult], sidecars: FolderSidecars, manifest: Manifest,
               dst: Path, options: BuildOptions, release, progress: Progress | None) -> list[BuildResult]:
    existing = {p.name for p in dst.iterdir() if p.is_dir()} if dst.is_dir() else set()
    for index, source in enumerate(sources, 1):
        if progress:
            progress(index, len(sources), source.name)
        started = time.perf_counter()
        try:
            if source.name in existing and manifest.entry(source.name) is None:
                raise BuildError(f"{dst / source.name} exists and was not built by tritonforge; refusing to touch it")
            built = _build_model(source, sidecars, dst, manifest, options, release)
        except BuildError as exc:
            built = [BuildResult(source.name, source.path.name, reason=str(exc))]
        except Exception as exc:  # a converter's own failure: still one line, still the next model
            built = [BuildResult(source.name, source.path.name, reason=f"{type(exc).__name__}: {one_line(exc)}")]
        for result in built:
            if result.status == "FAILED" and not result.reason.startswith(source.path.name):
                result = replace(result, reason=f"{source.path.name}: {result.reason}")
            results.append(replace(result, seconds=time.perf_counter() - started))
    return sorted(results, key=lambda r: r.name)


def _build_model(source: ModelSource, sidecars: FolderSidecars, repo: Path, manifest: Manifest,
                 options: BuildOptions, release) -> list[BuildResult]:
    sidecar = sidecars.for_model(source.name, source.sidecar)
    real = _outside(source.path, sidecars.folder, options.allow_outside)
    if real is not None:
        raise BuildError(f"{source.path.name}: is a symlink to {real}, outside the models folder; "
                         f"copy it in, or pass --allow-outside {real.parent}")
    probe = FileProbe(source.path, options.allow_pickle)
    adapter = converters.REGISTRY.detect(probe)
    fmt_name = _target_format(adapter, sidecar, options, source)
    fmt = converters.FORMATS[fmt_name]
    release.refuse_unservable(fmt.platform)
    kind = sidecar.device or options.device
    kind = ("gpu" if adapter.neural or fmt.prefers_gpu else "cpu") if kind == "auto" else kind
    settings_key = {"format": fmt_name, "kind": kind, "max_batch_size": options.max_batch_size,
                    "warmup": options.warmup, "triton": release.name, "tritonforge": 2}
    precisions = tuple(dict.fromkeys(sidecar.precisions + options.precisions))
    if precisions:
        settings_key["precisions"] = [precision_key(p) for p in precisions]
    step_files = [source.path.parent / str(step["file"]) for step in (sidecar.preprocess, sidecar.postprocess)
                  if isinstance(step, dict) and step.get("file")]
    sidecar_files = [p for p in (source.sidecar, sidecars.folder / FOLDER_SIDECAR, sidecar.samples, sidecar.calibration, *step_files)
                     if p and p.is_file()]
    digest = staging.fingerprint([source.path] + sidecar_files, settings_key)
    latest = manifest.latest(source.name)
    done = versions(repo / source.name)
    if latest and latest.get("fingerprint") == digest and manifest.entry(source.name)["latest_version"] in done:
        return [_unchanged(source, name, manifest) for name in [source.name] + latest.get("ensemble", []) + latest.get("reduced", [])
                if manifest.entry(name)]

    model = adapter.load(probe, sidecar)
    version = (done[-1] if done else 0) + 1
    with staging.staging(repo, source.name) as staged:
        version_dir = staged / str(version)
        version_dir.mkdir()
        artifact = version_dir / fmt.artifact_name(adapter)
        declared = adapter.convert(model, sidecar, fmt_name, artifact)
        signature = fmt.read_signature(artifact, declared)
        checked = _verify(source, adapter, model, fmt, artifact, signature, sidecar)
        write_samples(version_dir / SAMPLES_FILE, Samples(checked.samples, checked.expected, checked.atol, checked.rtol))

        labels = sidecar.labels or adapter.labels(model)
        labels_output = _labels_output(source, signature, labels)
        settings = configure.ServingSettings(
            max_batch_size=sidecar.max_batch_size if sidecar.max_batch_size is not None else options.max_batch_size,
            dynamic_batching=sidecar.dynamic_batching,
            max_queue_delay_microseconds=sidecar.max_queue_delay_microseconds,
            preferred_batch_size=sidecar.preferred_batch_size,
            kind=kind,
            instances=sidecar.instances,
            labels_output=labels_output,
            warmup=options.warmup,
            queue=sidecar.queue,
            priority_levels=sidecar.priority_levels,
            default_priority_level=sidecar.default_priority_level,
            response_cache=sidecar.response_cache,
            tensorrt_precision=sidecar.tensorrt_precision,
            tensorrt_workspace_bytes=sidecar.tensorrt_workspace_bytes,
            intra_op_threads=sidecar.intra_op_threads,
            inter_op_threads=sidecar.inter_op_threads,
            graph_level=sidecar.graph_level,
            openvino=sidecar.openvino,
        )
        model_config = configure.build_config(source.name, fmt.platform, signature, settings, backend=fmt.backend,
                                              parameters=fmt.config_parameters(artifact, release.rules))
        variants = configure.variants(model_config, signature, settings, release)
        model_config, variants = _keep_version_policy(repo / source.name, model_config, variants)
        kept = {name: (repo / source.name / CONFIGS_DIR / f"{name}.pbtxt").read_text()
                for name in manifest.kept_variants(source.name) if (repo / source.name / CONFIGS_DIR / f"{name}.pbtxt").is_file()}
        write_model_files(staged, model_config, variants, kept, labels if labels_output else None, checked.samples, signature)
        entries, ensemble_errors = [], ()
        if sidecar.preprocess or sidecar.postprocess:
            facts = ModelFacts(signature, adapter.feature_names(model), adapter.accepts_missing, labels if labels_output else None,
                               labels_output, are_probabilities(checked.expected.get(labels_output)), source.path.parent)
            entries, ensemble_errors = ensembles.plan(
                source.name, source.path.name, sidecar, facts, model_config, checked.samples, checked.run_artifact,
                lambda inputs: adapter.reference(model, inputs, signature), checked.atol, checked.rtol)
            for entry in entries:
                if (repo / entry.name).exists() and manifest.entry(entry.name) is None:
                    raise BuildError(f"{repo / entry.name} exists and was not built by tritonforge; refusing to touch it")
        staging.install(repo, source.name, staged, version)

    record = {
        "fingerprint": digest,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "signature": signature.describe(),
        "atol": checked.atol,
        "rtol": checked.rtol,
        "errors": _error_record(checked.errors),
        "tools": tool_versions(),
    }
    common = {"source": source.path.name, "triton_version": release.name}
    results = [BuildResult(source.name, source.path.name, adapter.framework, fmt_name, signature, version, "OK", errors=checked.errors)]
    for entry in entries:
        entry_version = _install_entry(repo, entry)
        entry_kind = "ensemble" if entry.samples else "python"
        entry_errors = ensemble_errors if entry.samples else ()
        entry_signature = config_file.signature_of(entry.config)
        manifest.record(entry.name, entry_version,
                        {**common, "framework": entry_kind, "format": entry_kind, "platform": entry.config.platform or entry.config.backend},
                        {**record, "signature": entry_signature.describe(), "errors": _error_record(entry_errors)})
        results.append(BuildResult(entry.name, source.path.name, entry_kind, entry_kind, entry_signature,
                                   entry_version, "OK", errors=entry_errors))
    # The source model answers the gate rows once for every precision, and only for one that is not refused.
    gate_rows = functools.cache(lambda: reduced.gate_rows(adapter, model, signature, checked, sidecar))
    for precision in () if sidecar.replace_fp32 else precisions:
        results.append(reduced.reduced_entry(source, precision, repo, manifest, version, fmt, adapter.neural, signature, gate_rows,
                                             sidecar, model_config, variants, labels if labels_output else None, settings,
                                             release, {**common, "framework": adapter.framework}, digest))
    reduced_names = [r.name for r in results if r.status == "OK" and r.name.endswith(tuple(f"_{p}" for p in precisions))]
    manifest.record(source.name, version, {**common, "framework": adapter.framework, "format": fmt_name,
                                           "platform": fmt.platform or fmt.backend},
                    {**record, "ensemble": [e.name for e in entries], "reduced": reduced_names})
    recorded = manifest.entry(source.name).setdefault("variants", {})
    for name in variants:
        if name not in kept:
            recorded[name] = {"by": "build-repo"}
    if sidecar.replace_fp32:  # the reduced artifact becomes this entry's next version, served as latest
        [precision] = precisions
        results.append(reduced.reduced_entry(source, precision, repo, manifest, version, fmt, adapter.neural, signature,
                                             gate_rows, sidecar,
                                             model_config, variants, labels if labels_output else None, settings, release,
                                             {**common, "framework": adapter.framework}, digest, replace_fp32=True))
    manifest.save()
    return results


@dataclass(frozen=True)
class Verified:
    """The sample rows, the source framework's answers, and how far the artifact is from them."""

    samples: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    errors: tuple[OutputError, ...]
    atol: float
    rtol: float
    run_artifact: Callable


def _verify(source: ModelSource, adapter, model, fmt, artifact: Path, signature: Signature, sidecar: Sidecar) -> Verified:
    """Run the source model and the artifact on the same rows; a mismatch fails the model with the numbers."""
    rng = np.random.default_rng(0)
    if sidecar.samples:
        samples = verify.check_sample_inputs(read_samples(sidecar.samples).inputs, signature, sidecar.samples.name)
    else:
        samples = (adapter.sample_inputs(model, signature, sidecar.sample_rows, rng)
                   or verify.sample_inputs(signature, sidecar.sample_rows, rng))
    expected = adapter.reference(model, samples, signature)
    run_artifact = fmt.runner(artifact)
    actual = run_artifact(samples)
    atol = sidecar.atol if sidecar.atol is not None else verify.DEFAULT_ATOL
    rtol = sidecar.rtol if sidecar.rtol is not None else verify.DEFAULT_RTOL
    errors = verify.compare(signature, expected, actual, atol, rtol)
    if not all(e.ok for e in errors):
        raise BuildError(f"{source.path.name}: {fmt.name} artifact does not match {adapter.framework}: "
                         f"{verify.describe_mismatch(errors)}{adapter.mismatch_hint(model)}")
    for checker, run in fmt.cross_checks(artifact):  # a second reader of the artifact, as its server reads it
        cross = verify.compare(signature, expected, run(samples), atol, rtol)
        if not all(e.ok for e in cross):
            raise BuildError(f"{source.path.name}: {fmt.name} artifact read by {checker} does not match {adapter.framework}: "
                             f"{verify.describe_mismatch(cross)}")
        errors = tuple(max(pair, key=lambda e: e.max_abs) for pair in zip(errors, cross))
    expected = {spec.name: expected[spec.name] for spec in signature.outputs}
    return Verified(samples, expected, errors, atol, rtol, run_artifact)


def _error_record(errors: tuple[OutputError, ...]) -> dict[str, dict[str, float]]:
    return {e.name: {"max_abs": e.max_abs, "max_rel": e.max_rel} for e in errors}


def _install_entry(repo: Path, entry: Entry) -> int:
    """A step or ensemble entry: next version folder with its model.py or samples, and its config."""
    version = (versions(repo / entry.name) or [0])[-1] + 1
    with staging.staging(repo, entry.name) as staged:
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
        staging.install(repo, entry.name, staged, version)
    return version


def _keep_version_policy(model_dir: Path, model_config, variants: dict):
    """A policy that repo-versions set (a rollback, a pin) survives a rebuild: the new version is
    served when it is promoted, not because it was built."""
    current = model_dir / CONFIG_FILE
    if not current.is_file():
        return model_config, variants
    policy = config_file.version_policy(config_file.read(current))
    if policy == config_file.VersionPolicy("latest"):
        return model_config, variants
    return (config_file.with_version_policy(model_config, policy),
            {name: config_file.with_version_policy(variant, policy) for name, variant in variants.items()})


def _target_format(adapter, sidecar: Sidecar, options: BuildOptions, source: ModelSource) -> str:
    if sidecar.format:
        if sidecar.format not in adapter.formats:
            raise BuildError(f"{source.path.name}: format '{sidecar.format}' is not available for {adapter.framework} "
                             f"models (available: {', '.join(adapter.formats)})")
        return sidecar.format
    return options.format if options.format in adapter.formats else adapter.formats[0]


def _labels_output(source: ModelSource, signature: Signature, labels: tuple[str, ...] | None) -> str | None:
    """The output whose last dimension has one entry per class name."""
    if not labels:
        return None
    for spec in signature.outputs:
        if spec.dtype.kind == "f" and spec.shape and spec.shape[-1] == len(labels):
            return spec.name
    raise BuildError(f"{source.path.name}: {len(labels)} labels given, but no output has {len(labels)} classes "
                     f"({signature.describe()})")


def _unchanged(source: ModelSource, name: str, manifest: Manifest) -> BuildResult:
    entry = manifest.entry(name)
    record = manifest.latest(name)
    errors = tuple(
        OutputError(output, e["max_abs"], e["max_rel"], record["atol"], record["rtol"], True)
        for output, e in record.get("errors", {}).items()
    )
    return BuildResult(name, source.path.name, entry["framework"], entry["format"], None, entry["latest_version"], "UNCHANGED",
                       reason=record.get("signature", ""), errors=errors)
