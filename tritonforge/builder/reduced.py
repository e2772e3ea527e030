"""Reduced-precision entries (``<name>_int8``, ``<name>_fp16``): the FP32 artifact converted by
:mod:`tritonforge.converters.precision`, judged by its gate on rows that are never the calibration
rows, and written as an entry of its own beside the FP32 one."""
from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np

from .. import verify
from ..converters import precision as precisions
from ..converters.probe import one_line
from ..errors import BuildError
from ..repository import SAMPLES_FILE, Samples, Signature, read_samples, versions, write_samples
from ..repository import config as config_file
from ..repository.integrity import file_hashes
from ..sidecar import Sidecar
from ..verify import OutputError
from . import staging
from .files import are_probabilities, tool_versions, write_model_files
from .results import BuildResult, Status

GATE_ROWS = 64


def gate_rows(build) -> tuple[dict, dict]:
    """(rows, the source model's answers) that judge a reduced entry: the verification rows, plus
    generated ones up to GATE_ROWS (another seed than the calibration rows). The source model
    answers them once for every precision, and only for one that is not refused."""
    if build.gate is None:
        adapter, model, signature = build.adapter, build.model, build.signature
        rows = build.verified.samples
        count = len(next(iter(rows.values())))
        if count < GATE_ROWS and signature.batched:
            rng = np.random.default_rng(2)
            extra = (adapter.sample_inputs(model, signature, GATE_ROWS - count, rng)
                     or verify.sample_inputs(signature, GATE_ROWS - count, rng))
            rows = {k: np.concatenate([v, extra[k].astype(v.dtype)]) for k, v in rows.items()}
        expected = adapter.reference(model, rows, signature)
        build.gate = rows, {spec.name: expected[spec.name] for spec in signature.outputs}
    return build.gate


def reduced_entry(build, precision: str, replace_fp32: bool = False) -> BuildResult:
    """``<name>_<precision>``: the FP32 artifact at reduced precision, judged by its gate, as an entry of
    its own beside the FP32 one; with ``replace_fp32``, the FP32 entry's next version instead. A
    failure fails this entry (or version) only, with the figures."""
    source = build.source
    name = source.name if replace_fp32 else f"{source.name}_{precision}"
    started = time.perf_counter()
    try:
        why = precisions.refusal(build.signature, build.adapter.neural, build.format.name, precision)
        if why:
            raise BuildError(f"{source.path.name}: {why}")
        if not replace_fp32:
            build.manifest.refuse_foreign(name)
        version, verdict = _write_reduced(build, name, precision, replace_fp32)
        error = OutputError(verdict["worst"] or "-", verdict["error"], verdict["error"], 0.0, 0.0, True)
        return BuildResult(name, source.path.name, build.adapter.framework, f"onnx-{precision}", build.signature, version,
                           Status.OK, errors=(error,), seconds=time.perf_counter() - started)
    except BuildError as exc:
        return BuildResult(name, source.path.name, reason=str(exc), seconds=time.perf_counter() - started)
    except Exception as exc:  # a quantizer's own failure: this entry only
        return BuildResult(name, source.path.name, reason=f"{source.path.name}: {precision}: {type(exc).__name__}: {one_line(exc)}",
                           seconds=time.perf_counter() - started)


def _write_reduced(build, name: str, precision: str, replace_fp32: bool):
    """Convert, judge, record and move in the reduced version; returns (version, verdict)."""
    source, fmt, repo = build.source, build.format, build.repo
    spec = precisions.PRECISIONS[precision]
    gate = replace(spec.gate, **dict(build.sidecar.precision.gate))
    calibration, calibration_origin = _calibration_rows(build.sidecar, build.signature)
    version = (versions(repo / name) or [0])[-1] + 1  # with replace_fp32: right after the FP32 version
    fp32_artifact = build.model_dir / str(build.version) / fmt.filename
    with staging.staging(repo, name) as staged:
        version_dir = staged / str(version)
        version_dir.mkdir()
        artifact = version_dir / fmt.filename
        details = spec.convert(fp32_artifact, artifact, calibration)
        if "calibration_rows" in details:
            details = {**details, "calibration": calibration_origin}
        # The gate rows are the verification rows (and more), never the calibration rows.
        rows, expected = gate_rows(build)
        actual = fmt.runner(artifact)(rows)
        labels_output = build.labels_output
        classifier_outputs = {labels_output} if labels_output else {
            n for n, v in expected.items() if v.ndim == 2 and v.shape[1] > 1 and are_probabilities(v)}
        verdict = gate.judge(expected, actual, classifier_outputs)
        if not verdict["ok"]:
            raise BuildError(
                f"{source.path.name}: {precision} fails its gate: label agreement {verdict['agreement']:.3f} "
                f"(needs >= {gate.min_agreement}), error {verdict['error']:.3g} on '{verdict['worst']}' "
                f"(needs <= {gate.max_error}); the FP32 entry is unaffected")
        gate_record = {"precision": precision, **gate.as_dict(), "classifier_outputs": sorted(classifier_outputs)}
        write_samples(version_dir / SAMPLES_FILE, Samples(rows, expected, 0.0, 0.0, gate_record))
        config = _renamed(build.config, name)
        variants = {variant: _renamed(message, name) for variant, message in build.variants.items()}
        # As the FP32 entry's next version, its configs stay what a later command (tune-repo) made them.
        kept = config_file.variant_texts(repo / name, build.manifest.kept_variants(name)) if replace_fp32 else {}
        write_model_files(staged, config, variants, kept, build.labels, rows, build.signature)
        details["speed_ratio_vs_fp32"] = round(precisions.speed_ratio(fp32_artifact, artifact, _batch_of(rows, 64)), 3)
        details["files"] = file_hashes(version_dir)
        if build.context.validator is not None:  # Triton loads it and meets the gate, before it is recorded or moved in
            build.context.validator.check(name, staged, version, source.path.name,
                                          f"{build.adapter.framework} within its {precision} gate")
        _record_reduced(build, name, version, precision, replace_fp32, verdict, {**details, "pending": True}, gate)
        build.manifest.save()  # recorded before it is moved in, as every version
        staging.install(repo, name, staged, version)
        build.manifest.settle(name, version)
        build.manifest.save()
    return version, verdict


def _renamed(message, name: str):
    copy = type(message)()
    copy.CopyFrom(message)
    copy.name = name
    return copy


def _record_reduced(build, name: str, version: int, precision: str, replace_fp32: bool, verdict: dict, details: dict, gate) -> None:
    fmt, manifest = build.format, build.manifest
    facts = build.facts(framework=build.adapter.framework, format=fmt.name, platform=fmt.platform, precision=precision)
    if not replace_fp32:
        facts["of"] = build.name
    carried = {"ensemble": (manifest.latest(name) or {}).get("ensemble", [])} if replace_fp32 else {}
    calibration = details.pop("calibration", None)
    manifest.record(name, version, facts,
                    {"fingerprint": build.fingerprint, "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "signature": build.signature.describe(), "precision": precision, **details,
                     "calibration": calibration, "gate": gate.as_dict(), "agreement": verdict["agreement"],
                     "error": verdict["error"], "tools": tool_versions(), **carried})
    if not replace_fp32:
        manifest.record_built_variants(name, build.variants, keep_others=False)


def _calibration_rows(sidecar: Sidecar, signature: Signature) -> tuple[dict, str]:
    calibration = sidecar.precision.calibration
    if calibration:
        rows = verify.check_sample_inputs(read_samples(calibration).inputs, signature, calibration.name)
        return rows, f"{calibration.name} ({len(next(iter(rows.values())))} rows)"
    rows = verify.sample_inputs(signature, 64, np.random.default_rng(1))  # another seed than the gate rows
    return rows, "64 generated rows (uniform in [0, 1) for floats)"


def _batch_of(samples: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    count = len(next(iter(samples.values())))
    return {k: np.concatenate([v] * (-(-rows // count)))[:rows] for k, v in samples.items()}
