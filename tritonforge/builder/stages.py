"""The stages of one model's build, in order: each takes the :class:`ModelBuild` and returns it,
or raises :class:`BuildError` with its one-line cause. :data:`STAGES` is the build's only path;
a new stage is one function here and one line in that list."""
from __future__ import annotations

import inspect
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import converters, ensembles, verify
from ..converters.formats import fil as fil_format
from ..converters.precision import fingerprint_key as precision_key
from ..converters.probe import FileProbe, one_line
from ..ensembles import ModelFacts, fused
from ..ensembles.library import detect as detect_library
from ..errors import BuildError
from ..repository import DYNAMIC, SAMPLES_FILE, Samples, Signature, read_samples, versions, write_samples
from ..repository import config as config_file
from ..repository.integrity import file_hashes, version_problems
from ..repository.layout import CONFIG_FILE, REFUSE_NAN_PARAMETER
from ..sidecar import FOLDER_SIDECAR
from . import configure, fusing, reduced, staging, validate
from .files import are_probabilities, write_entry, write_model_files
from .model_build import ModelBuild, Verified, error_record
from .results import BuildResult, Status, unchanged_result

FINGERPRINT_SCHEME = 2  # bump when a build of the same inputs would write something else


def read_sidecar(build: ModelBuild) -> ModelBuild:
    """The model's settings, and a refusal of a model that a symlink takes out of the models folder."""
    source, context = build.source, build.context
    build.manifest.refuse_foreign(source.name)
    build.sidecar = context.sidecars.for_model(source.name, source.sidecar)
    real = staging.outside(source.path, context.sidecars.folder, context.options.allow_outside)
    if real is not None:
        raise BuildError(f"{source.path.name}: is a symlink to {real}, outside the models folder; "
                         f"copy it in, or pass --allow-outside {real.parent}")
    return build


def detect(build: ModelBuild) -> ModelBuild:
    """The adapter that recognises the file's bytes, the target format, and where the model belongs."""
    options, sidecar = build.context.options, build.sidecar
    build.probe = FileProbe(build.source.path, options.allow_pickle, sidecar)  # a sidecar can declare what a file is (a YOLO head)
    build.adapter = converters.REGISTRY.detect(build.probe)
    build.format = converters.FORMATS[_target_format(build)]
    if build.format.name == "fil":  # the entry's own fil: group (class index or probabilities)
        build.format = build.format.for_settings(fil_format.parse_fil_settings(_sidecar_name(build), sidecar.fil))
    build.context.release.refuse_unservable(build.format.platform)
    kind = sidecar.device or options.device
    build.kind = ("gpu" if build.adapter.neural or build.format.prefers_gpu else "cpu") if kind == "auto" else kind
    build.precisions = tuple(dict.fromkeys(sidecar.precision.reduced + options.precisions))
    return build


def _target_format(build: ModelBuild) -> str:
    adapter, wanted = build.adapter, build.sidecar.format
    if wanted:
        if wanted not in adapter.formats:
            raise BuildError(f"{build.source.path.name}: format '{wanted}' is not available for {adapter.framework} "
                             f"models (available: {', '.join(adapter.formats)})")
        return wanted
    option = build.context.options.format
    return option if option in adapter.formats else adapter.formats[0]


def skip_unchanged(build: ModelBuild) -> ModelBuild:
    """The fingerprint of the source, its sidecars and the settings; equal to the latest version's,
    the model and its entries are reported UNCHANGED and nothing is written."""
    source, context, options = build.source, build.context, build.context.options
    settings = {"format": build.format.name, "kind": build.kind, "max_batch_size": options.max_batch_size,
                "warmup": options.warmup, "triton": context.release.name, "tritonforge": FINGERPRINT_SCHEME}
    if build.precisions:
        settings["precisions"] = [precision_key(p) for p in build.precisions]
    if _fuse_wanted(build):  # only when asked: a build without fusion keeps today's fingerprints
        settings["fuse"] = True
    sidecar_files = [p for p in (source.sidecar, context.sidecars.folder / FOLDER_SIDECAR, *build.sidecar.files)
                     if p and p.is_file()]
    build.fingerprint = staging.fingerprint([source.path] + sidecar_files, settings)
    latest, manifest = build.manifest.latest(source.name), build.manifest
    # Unchanged means the same inputs and the artifacts exactly as built: a tampered version is rebuilt.
    if (latest and latest.get("fingerprint") == build.fingerprint
            and not version_problems(build.model_dir, manifest.entry(source.name)["latest_version"], latest.get("files"))):
        names = [source.name, *latest.get("ensemble", []), *latest.get("reduced", [])]
        build.results = [unchanged_result(name, source.path.name, manifest) for name in names if manifest.entry(name)]
        build.finished = True
    return build


def load(build: ModelBuild) -> ModelBuild:
    build.model = build.adapter.load(build.probe, build.sidecar)
    return build


def stage_version(build: ModelBuild) -> ModelBuild:
    """The next version number, and a staging folder beside the repository to write it in."""
    done = versions(build.model_dir)
    build.version = (done[-1] if done else 0) + 1
    build.staged = build.cleanup.enter_context(staging.staging(build.repo, build.name))
    (build.staged / str(build.version)).mkdir()
    return build


def convert(build: ModelBuild) -> ModelBuild:
    """The artifact in the target format, and its signature read back from it."""
    build.artifact = build.staged / str(build.version) / build.format.artifact_name(build.adapter)
    # An adapter whose artifact differs by release (XGBoost's intercepts on FIL) takes the release's rules.
    takes_rules = "rules" in inspect.signature(build.adapter.convert).parameters
    extra = {"rules": build.context.release.rules} if takes_rules else {}
    declared = build.adapter.convert(build.model, build.sidecar, build.format.name, build.artifact, **extra)
    build.signature = build.format.read_signature(build.artifact, declared)
    return build


def verify_artifact(build: ModelBuild) -> ModelBuild:
    """The source model and the artifact run the same rows; a mismatch fails the model with the numbers."""
    source, adapter, fmt, sidecar, signature = build.source, build.adapter, build.format, build.sidecar, build.signature
    samples = _sample_rows(build)
    expected = adapter.reference(build.model, samples, signature)
    run_artifact = fmt.runner(build.artifact)
    atol = sidecar.tolerance.atol if sidecar.tolerance.atol is not None else verify.DEFAULT_ATOL
    rtol = sidecar.tolerance.rtol if sidecar.tolerance.rtol is not None else verify.DEFAULT_RTOL
    build.rows_cover = verify.coverage(samples, adapter.row_coverage(build.model, samples))
    try:
        answers = run_artifact(samples)
    except Exception as exc:  # rows the source answers (an unseen category, NaN) that the artifact cannot take
        raise BuildError(f"{source.path.name}: {fmt.name} artifact fails on rows {adapter.framework} answers "
                         f"({', '.join(build.rows_cover)}): {one_line(exc)}") from None
    errors = verify.compare(signature, expected, answers, atol, rtol)
    if not all(e.ok for e in errors):
        raise BuildError(f"{source.path.name}: {fmt.name} artifact does not match {adapter.framework} "
                         f"(rows: {', '.join(build.rows_cover)}): "
                         f"{verify.describe_mismatch(errors)}{adapter.mismatch_hint(build.model)}")
    for checker, run in fmt.cross_checks(build.artifact):  # a second reader of the artifact, as its server reads it
        cross = verify.compare(signature, expected, run(samples), atol, rtol)
        if not all(e.ok for e in cross):
            raise BuildError(f"{source.path.name}: {fmt.name} artifact read by {checker} does not match {adapter.framework}: "
                             f"{verify.describe_mismatch(cross)}")
        errors = tuple(max(pair, key=lambda e: e.max_abs) for pair in zip(errors, cross))
    expected = {spec.name: expected[spec.name] for spec in signature.outputs}
    build.verified = Verified(samples, expected, errors, atol, rtol, run_artifact)
    build.covered.append(_shapes(samples))
    return build


OTHER_ROWS, OTHER_LENGTH = 3, 7  # a second batch size and a second size of every other dynamic axis


def verify_other_sizes(build: ModelBuild) -> ModelBuild:
    """A dynamic axis that is not the batch (a sequence, an image side) is checked at a second
    size too, with a batch of more than one: an artifact that fixed the size it was traced at, or
    answers right at one length only, fails here rather than in front of its first real request."""
    signature = build.signature
    if not any(DYNAMIC in spec.shape[1:] for spec in signature.inputs):
        return build
    resized = Signature(tuple(replace(spec, shape=_other_size(spec.shape, signature.batched)) for spec in signature.inputs),
                        signature.outputs)
    rng = np.random.default_rng(3)
    rows = (build.adapter.sample_inputs(build.model, resized, OTHER_ROWS, rng)
            or verify.sample_inputs(resized, OTHER_ROWS, rng))
    checked = build.verified
    try:
        actual = checked.run_artifact(rows)
    except Exception as exc:
        raise BuildError(f"{build.source.path.name}: {build.format.name} artifact refuses inputs at another size of its dynamic "
                         f"axes ({_shapes(rows)}): {one_line(exc)}") from None
    errors = verify.compare(signature, build.adapter.reference(build.model, rows, signature), actual, checked.atol, checked.rtol)
    if not all(e.ok for e in errors):
        raise BuildError(f"{build.source.path.name}: {build.format.name} artifact does not match {build.adapter.framework} "
                         f"at {_shapes(rows)}: {verify.describe_mismatch(errors)}")
    build.covered.append(_shapes(rows))
    build.rows_cover.append("several sizes")
    return build


def _other_size(shape: tuple[int, ...], batched: bool) -> tuple[int, ...]:
    return tuple(d if d != DYNAMIC else (DYNAMIC if i == 0 and batched else OTHER_LENGTH) for i, d in enumerate(shape))


def _shapes(rows: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{name}[{'x'.join(map(str, value.shape))}]" for name, value in rows.items())


def nan_policy(build: ModelBuild) -> ModelBuild:
    """The float inputs in which a NaN gets a 400 from serve-repo rather than an answer of NaN:
    those the source model itself cannot take one in (it raises, or answers NaN), found by asking
    it with one NaN per input; the sidecar's ``allow_nan`` decides instead when it is given."""
    if build.sidecar.allow_nan is not None:
        build.refuse_nan = () if build.sidecar.allow_nan else tuple(
            s.name for s in build.signature.inputs if s.dtype.kind == "f")
        return build
    row = {name: value[:1].copy() for name, value in build.verified.samples.items()}
    refused = []
    for spec in build.signature.inputs:
        if spec.dtype.kind != "f":
            continue
        probe = {**row, spec.name: row[spec.name].copy()}
        probe[spec.name].flat[0] = np.nan
        try:
            answer = build.adapter.reference(build.model, probe, build.signature)
            takes_it = all(not (np.asarray(v).dtype.kind == "f" and np.isnan(v).any()) for v in answer.values())
        except Exception:
            takes_it = False
        if not takes_it:
            refused.append(spec.name)
    build.refuse_nan = tuple(refused)
    return build


def _sample_rows(build: ModelBuild) -> dict[str, np.ndarray]:
    sidecar, signature = build.sidecar, build.signature
    if sidecar.samples:
        return verify.check_sample_inputs(read_samples(sidecar.samples).inputs, signature, sidecar.samples.name)
    rng = np.random.default_rng(0)
    rows = (build.adapter.sample_inputs(build.model, signature, sidecar.sample_rows, rng)
            or verify.sample_inputs(signature, sidecar.sample_rows, rng))
    # Boosters' columns are features: their rows carry NaN already, and each column's far ends too,
    # where the booster answers them (a categorical column takes only its codes).
    if build.adapter.accepts_missing:
        extended = verify.with_extremes(rows)
        try:
            build.adapter.reference(build.model, extended, signature)
            return extended
        except Exception:
            return rows
    return rows


def settle_serving(build: ModelBuild) -> ModelBuild:
    """Class names and the output they describe, and how the entry is served."""
    sidecar, options = build.sidecar, build.context.options
    class_index = getattr(getattr(build.format, "settings", None), "class_index", False)  # one column: no class names
    labels = None if class_index else (sidecar.labels or build.adapter.labels(build.model))
    labels_output = _labels_output(build, labels)
    build.labels = labels if labels_output else None
    batching = sidecar.batching
    max_batch_size = batching.max_batch_size if batching.max_batch_size is not None else options.max_batch_size
    too_large = [s for s in batching.preferred_batch_size or () if s > max_batch_size]
    if too_large and build.signature.batched and max_batch_size > 0:
        raise BuildError(f"{_sidecar_name(build)}: 'dynamic_batching.preferred_batch_size' {too_large[0]} is larger than "
                         f"max_batch_size {max_batch_size}; lower it or raise max_batch_size")
    warmup_shapes = {name: value.shape[1:] for name, value in build.verified.samples.items()}
    build.settings = configure.ServingSettings(max_batch_size, build.kind, sidecar.instances, labels_output, options.warmup,
                                               batching, sidecar.response_cache, sidecar.tensorrt, sidecar.onnxruntime,
                                               warmup_shapes)
    return build


def _sidecar_name(build: ModelBuild) -> str:
    own = build.source.sidecar
    return own.name if own else f"{build.source.path.name} (sidecar {FOLDER_SIDECAR})"


def _labels_output(build: ModelBuild, labels: tuple[str, ...] | None) -> str | None:
    """The output whose last dimension has one entry per class name."""
    if not labels:
        return None
    for spec in build.signature.outputs:
        if spec.dtype.kind == "f" and spec.shape and spec.shape[-1] == len(labels):
            return spec.name
    raise BuildError(f"{build.source.path.name}: {len(labels)} labels given, but no output has {len(labels)} classes "
                     f"({build.signature.describe()})")


def configure_entry(build: ModelBuild) -> ModelBuild:
    """The portable config and one variant per kind of host; a version policy that repo-versions set
    (a rollback, a pin) and variants another command wrote (tune-repo's) survive the rebuild."""
    fmt, release = build.format, build.context.release
    parameters = fmt.config_parameters(build.artifact, release.rules)
    if build.refuse_nan and fmt.platform == configure.ONNX_PLATFORM:  # serve-repo's backend reads it; Triton's ignores it
        parameters = {**parameters, REFUSE_NAN_PARAMETER: ",".join(build.refuse_nan)}
    config = configure.build_config(build.name, fmt.platform, build.signature, build.settings, backend=fmt.backend,
                                    parameters=parameters)
    variants = configure.variants(config, build.signature, build.settings, release)
    current = build.model_dir / CONFIG_FILE
    policy = config_file.version_policy(config_file.read(current)) if current.is_file() else None
    if policy is not None and policy != config_file.VersionPolicy("latest"):
        config = config_file.with_version_policy(config, policy)
        variants = {name: config_file.with_version_policy(variant, policy) for name, variant in variants.items()}
    build.config, build.variants = config, variants
    build.kept_variants = config_file.variant_texts(build.model_dir, build.manifest.kept_variants(build.name))
    return build


def write(build: ModelBuild) -> ModelBuild:
    """The samples in the version folder; configs, labels and warmup rows beside it."""
    checked = build.verified
    write_samples(build.staged / str(build.version) / SAMPLES_FILE,
                  Samples(checked.samples, checked.expected, checked.atol, checked.rtol))
    write_model_files(build.staged, build.config, build.variants, build.kept_variants, build.labels, checked.samples,
                      build.signature)
    return build


def validate_in_triton(build: ModelBuild) -> ModelBuild:
    """Triton's own config validation and answers from the served entries, before any is moved in
    (with ``validate``): the model, its Python steps and its ensembles load as one set, so a config
    Triton refuses is never reported OK and the repository keeps what it had."""
    validator = build.context.validator
    if validator is not None:
        scratch = Path(build.cleanup.enter_context(tempfile.TemporaryDirectory(prefix="tritonforge-entries-")))
        framework = build.adapter.framework
        around = validate.stage_entries(build.entries, build.repo, scratch, f"{framework} through its steps")
        validator.check_set(build.source.path.name,
                            [validate.Staged(build.name, build.staged, build.version, framework), *around])
    return build


def plan_ensembles(build: ModelBuild) -> ModelBuild:
    """Step and ensemble entries around the model, verified against the source, when the sidecar asks."""
    sidecar, adapter, checked = build.sidecar, build.adapter, build.verified
    if not (sidecar.preprocess or sidecar.postprocess):
        return build
    facts = ModelFacts(build.signature, adapter.feature_names(build.model), adapter.accepts_missing, build.labels,
                       build.labels_output, are_probabilities(checked.expected.get(build.labels_output)),
                       build.source.path.parent, build.source.path)
    # NaN arrives at a tabular step as a missing field, which it refuses unless the model takes NaN.
    samples = checked.samples if adapter.accepts_missing else verify.without_nan(checked.samples)
    build.entries, build.ensemble_errors = ensembles.plan(
        build.name, build.source.path.name, sidecar, facts, build.config, samples, checked.run_artifact,
        lambda inputs: adapter.reference(build.model, inputs, build.signature), checked.atol, checked.rtol)
    for entry in build.entries:
        build.manifest.refuse_foreign(entry.name)
    return build


def plan_detection(build: ModelBuild) -> ModelBuild:
    """A detector's ensemble (``<name>_detect``: image bytes in, boxes, scores, classes out), verified
    against the export, whatever the sidecar asks otherwise (its ``detect:`` group sets thresholds)."""
    planned = detect_library.plan_for_build(build)
    if planned is not None:
        entries, errors = planned
        for entry in entries:
            build.manifest.refuse_foreign(entry.name)
        build.entries, build.ensemble_errors = [*build.entries, *entries], errors or build.ensemble_errors
    return build


def fuse_pipelines(build: ModelBuild) -> ModelBuild:
    """With the sidecar's ``fuse: true`` or ``--fuse``, each planned ensemble that its fuser can
    make one ONNX graph gets ``<ensemble>_fused`` beside it, verified against the Python steps and
    loaded by Triton; a pipeline that cannot fuse is a SKIPPED line with the reason."""
    if not _fuse_wanted(build):
        return build
    artifact = build.artifact if build.format.name == "onnx" else None
    planned = fused.pipelines(build.name, build.source.path.name, build.entries, build.config, artifact,
                              build.verified.atol, build.verified.rtol)
    if not planned and build.sidecar.fuse:
        build.results.append(_skipped(build, fused.fused_name(build.name), "'fuse: true' but the model has no Python-step "
                                      "ensemble to fuse (no preprocess/postprocess, not a detector)"))
    scratch = Path(build.cleanup.enter_context(tempfile.TemporaryDirectory(prefix="tritonforge-fused-")))
    for pipeline in planned:
        try:
            entry, errors = fusing.fused_entry(pipeline, build, scratch)
            fusing.validate(entry, build)
        except fusing.CannotFuse as reason:
            build.results.append(_skipped(build, pipeline.name, str(reason)))
            continue
        except BuildError as exc:  # the model and its Python-step ensemble are still installed
            build.results.append(BuildResult(pipeline.name, build.source.path.name, reason=str(exc)))
            continue
        build.manifest.refuse_foreign(entry.name)
        build.entries.append(entry)
        build.entry_errors[entry.name] = errors
    return build


def _fuse_wanted(build: ModelBuild) -> bool:
    own = build.sidecar.fuse
    return own if own is not None else build.context.options.fuse


def _skipped(build: ModelBuild, name: str, reason: str) -> BuildResult:
    return BuildResult(name, build.source.path.name, "fused", "onnx", status=Status.SKIPPED, reason=f"cannot fuse: {reason}")


def install(build: ModelBuild) -> ModelBuild:
    """The staged version moved into the repository: one rename, then the config. The manifest
    records the version and the sha256 of each of its files first, so a build killed at any
    instant leaves either a recorded version that is missing (the next build drops the record)
    or a complete, recorded one."""
    build.version_files = file_hashes(build.staged / str(build.version))
    _record_model(build, pending=True)
    build.manifest.save()
    staging.install(build.repo, build.name, build.staged, build.version)
    build.manifest.settle(build.name, build.version)
    build.manifest.save()
    build.results.append(BuildResult(build.name, build.source.path.name, build.adapter.framework, build.format.name,
                                     build.signature, build.version, Status.OK, errors=build.verified.errors))
    return build


def _record_model(build: ModelBuild, **more) -> None:
    fmt = build.format
    build.manifest.record(build.name, build.version,
                          build.facts(framework=build.adapter.framework, format=fmt.name, platform=fmt.platform or fmt.backend),
                          build.record(files=build.version_files, verified_shapes=build.covered, rows_cover=build.rows_cover,
                                       ensemble=[e.name for e in build.entries], **more))


def install_ensembles(build: ModelBuild) -> ModelBuild:
    for entry in build.entries:
        kind, fmt = _entry_kind(entry)
        errors = build.entry_errors.get(entry.name, build.ensemble_errors if entry.samples else ())
        signature = config_file.signature_of(entry.config)

        def record_entry(version: int, files: dict[str, str]) -> None:  # before the entry's version is moved in
            build.manifest.record(entry.name, version,
                                  build.facts(framework=kind, format=fmt, platform=entry.config.platform or entry.config.backend),
                                  build.record(signature=signature.describe(), errors=error_record(errors), files=files,
                                               pending=True))
            build.manifest.save()

        version = write_entry(build.repo, entry, record_entry)
        build.manifest.settle(entry.name, version)
        build.manifest.save()
        build.results.append(BuildResult(entry.name, build.source.path.name, kind, fmt, signature, version, Status.OK,
                                         errors=errors))
    return build


def _entry_kind(entry) -> tuple[str, str]:
    """(framework, format) the report and manifest give an entry around the model."""
    if entry.template:
        return "python", "python"
    return ("ensemble", "ensemble") if entry.config.platform == "ensemble" else ("fused", "onnx")


def build_reduced(build: ModelBuild) -> ModelBuild:
    """``<name>_int8`` / ``<name>_fp16`` beside the FP32 entry; each judged by its gate, failing alone."""
    if not build.sidecar.precision.replace_fp32:
        build.results += [reduced.reduced_entry(build, precision) for precision in build.precisions]
    return build


def record(build: ModelBuild) -> ModelBuild:
    """The model's record again, now with the reduced entries that passed their gates, and the variants."""
    suffixes = tuple(f"_{p}" for p in build.precisions)
    _record_model(build, reduced=[r.name for r in build.results if r.status == Status.OK and r.name.endswith(suffixes)])
    build.manifest.record_built_variants(build.name, build.variants)
    return build


def replace_with_reduced(build: ModelBuild) -> ModelBuild:
    """With ``replace: true``, the one reduced artifact becomes the FP32 entry's next version, served as latest."""
    if build.sidecar.precision.replace_fp32:
        [precision] = build.precisions
        build.results.append(reduced.reduced_entry(build, precision, replace_fp32=True))
    return build


def save(build: ModelBuild) -> ModelBuild:
    build.manifest.save()
    return build


# discover (pipeline.discover) -> load -> convert -> verify -> write -> configure -> validate -> report
STAGES = (
    read_sidecar, detect, skip_unchanged,  # load: which adapter, which format, anything to do at all
    load, stage_version, convert,  # convert
    verify_artifact, verify_other_sizes, nan_policy,  # verify
    settle_serving, configure_entry,  # configure (configs are parsed back as they are written: validate)
    write, plan_ensembles, plan_detection, validate_in_triton, fuse_pipelines,  # write (validate: Triton loads them first)
    install, install_ensembles,
    build_reduced, record, replace_with_reduced, save,  # record what was built (the report is the results)
)
