"""Reduced-precision entries (``<name>_int8``, ``<name>_fp16``): the FP32 artifact converted by
:mod:`tritonforge.converters.precision`, judged by its gate on rows that are never the calibration
rows, and written as an entry of its own beside the FP32 one."""
from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from .. import verify
from ..converters import precision as precisions
from ..converters.probe import one_line
from ..errors import BuildError
from ..repository import SAMPLES_FILE, Samples, Signature, read_samples, versions, write_samples
from ..repository.layout import CONFIGS_DIR
from ..repository.manifest import Manifest
from ..sidecar import Sidecar
from ..verify import OutputError
from . import staging
from .files import are_probabilities, tool_versions, write_model_files
from .results import BuildResult

GATE_ROWS = 64


def gate_rows(adapter, model, signature: Signature, checked, sidecar: Sidecar) -> tuple[dict, dict]:
    """(rows, the source model's answers) that judge a reduced entry: the verification rows, plus
    generated ones up to GATE_ROWS (another seed than the calibration rows)."""
    rows = checked.samples
    count = len(next(iter(rows.values())))
    if count < GATE_ROWS and signature.batched:
        rng = np.random.default_rng(2)
        extra = (adapter.sample_inputs(model, signature, GATE_ROWS - count, rng)
                 or verify.sample_inputs(signature, GATE_ROWS - count, rng))
        rows = {k: np.concatenate([v, extra[k].astype(v.dtype)]) for k, v in rows.items()}
    expected = adapter.reference(model, rows, signature)
    return rows, {spec.name: expected[spec.name] for spec in signature.outputs}


def reduced_entry(source, precision: str, repo: Path, manifest: Manifest, fp32_version: int, fmt, neural: bool,
                   signature: Signature, judged_rows: Callable[[], tuple[dict, dict]], sidecar: Sidecar, fp32_config, fp32_variants: dict,
                   labels, settings, release, common: dict, digest: str, replace_fp32: bool = False) -> BuildResult:
    """``<name>_<precision>``: the FP32 artifact at reduced precision, judged by its gate, as an entry of
    its own beside the FP32 one; with ``replace_fp32``, the FP32 entry's next version instead. A
    failure fails this entry (or version) only, with the figures."""
    name = source.name if replace_fp32 else f"{source.name}_{precision}"
    started = time.perf_counter()
    try:
        why = precisions.refusal(signature, neural, fmt.name, precision)
        if why:
            raise BuildError(f"{source.path.name}: {why}")
        if not replace_fp32 and (repo / name).exists() and manifest.entry(name) is None:
            raise BuildError(f"{repo / name} exists and was not built by tritonforge; refusing to touch it")
        spec = precisions.PRECISIONS[precision]
        gate = replace(spec.gate, **dict(sidecar.precision_gate))
        calibration, calibration_origin = _calibration_rows(source, sidecar, signature)
        version = (versions(repo / name) or [0])[-1] + 1  # with replace_fp32: right after the FP32 version
        fp32_artifact = repo / source.name / str(fp32_version) / fmt.filename
        with staging.staging(repo, name) as staged:
            version_dir = staged / str(version)
            version_dir.mkdir()
            artifact = version_dir / fmt.filename
            details = spec.convert(fp32_artifact, artifact, calibration)
            # The gate rows are the verification rows (and more), never the calibration rows.
            rows, expected = judged_rows()
            actual = fmt.runner(artifact)(rows)
            classifier_outputs = {settings.labels_output} if settings.labels_output else {
                n for n, v in expected.items() if v.ndim == 2 and v.shape[1] > 1 and are_probabilities(v)}
            verdict = gate.judge(expected, actual, classifier_outputs)
            if not verdict["ok"]:
                raise BuildError(
                    f"{source.path.name}: {precision} fails its gate: label agreement {verdict['agreement']:.3f} "
                    f"(needs >= {gate.min_agreement}), error {verdict['error']:.3g} on '{verdict['worst']}' "
                    f"(needs <= {gate.max_error}); the FP32 entry is unaffected")
            gate_record = {"precision": precision, **gate.as_dict(), "classifier_outputs": sorted(classifier_outputs)}
            write_samples(version_dir / SAMPLES_FILE, Samples(rows, expected, 0.0, 0.0, gate_record))
            config = type(fp32_config)()
            config.CopyFrom(fp32_config)
            config.name = name
            variants = {}
            for variant, message in fp32_variants.items():
                variants[variant] = type(message)()
                variants[variant].CopyFrom(message)
                variants[variant].name = name
            # As the FP32 entry's next version, its configs stay what a later command (tune-repo) made them.
            kept = {v: (repo / name / CONFIGS_DIR / f"{v}.pbtxt").read_text() for v in manifest.kept_variants(name)
                    if (repo / name / CONFIGS_DIR / f"{v}.pbtxt").is_file()} if replace_fp32 else {}
            write_model_files(staged, config, variants, kept, labels, rows, signature)
            ratio = precisions.speed_ratio(fp32_artifact, artifact, _batch_of(rows, 64))
            staging.install(repo, name, staged, version)
        entry_facts = {**common, "format": fmt.name, "platform": fmt.platform, "precision": precision}
        if not replace_fp32:
            entry_facts["of"] = source.name
        carried = {"ensemble": (manifest.latest(name) or {}).get("ensemble", [])} if replace_fp32 else {}
        manifest.record(name, version, entry_facts,
                        {"fingerprint": digest, "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "signature": signature.describe(), "precision": precision, **details,
                         "calibration": calibration_origin if "calibration_rows" in details else None,
                         "gate": gate.as_dict(), "agreement": verdict["agreement"], "error": verdict["error"],
                         "speed_ratio_vs_fp32": round(ratio, 3), "tools": tool_versions(), **carried})
        if not replace_fp32:
            manifest.entry(name)["variants"] = {v: {"by": "build-repo"} for v in variants}
        error = OutputError(verdict["worst"] or "-", verdict["error"], verdict["error"], 0.0, 0.0, True)
        return BuildResult(name, source.path.name, common["framework"], f"onnx-{precision}", signature, version, "OK",
                           errors=(error,), seconds=time.perf_counter() - started)
    except BuildError as exc:
        return BuildResult(name, source.path.name, reason=str(exc), seconds=time.perf_counter() - started)
    except Exception as exc:  # a quantizer's own failure: this entry only
        return BuildResult(name, source.path.name, reason=f"{source.path.name}: {precision}: {type(exc).__name__}: {one_line(exc)}",
                           seconds=time.perf_counter() - started)


def _calibration_rows(source, sidecar: Sidecar, signature: Signature) -> tuple[dict, str]:
    if sidecar.calibration:
        rows = verify.check_sample_inputs(read_samples(sidecar.calibration).inputs, signature, sidecar.calibration.name)
        return rows, f"{sidecar.calibration.name} ({len(next(iter(rows.values())))} rows)"
    rows = verify.sample_inputs(signature, 64, np.random.default_rng(1))  # another seed than the gate rows
    return rows, "64 generated rows (uniform in [0, 1) for floats)"


def _batch_of(samples: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    count = len(next(iter(samples.values())))
    return {k: np.concatenate([v] * (-(-rows // count)))[:rows] for k, v in samples.items()}
