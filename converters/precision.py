"""Reduced-precision ONNX artifacts: INT8 (ONNX Runtime quantization) and FP16, with the gates
that judge them against the source model.

Quantization changes the numbers on purpose, so a reduced entry is judged by what its users care
about, not by atol/rtol: classifiers by label agreement and the largest probability error,
other outputs by their largest error relative to the output's scale (its spread on the gate rows).

    INT8: dynamic quantization (weights int8, activations quantized at run time) for models of
          MatMul/Gemm; static QDQ with calibration for convolutional models, calibrated on the
          sidecar's ``calibration`` rows or on generated rows that fit the inputs. Weights use 7 of
          their 8 bits (``reduce_range``): on x86-64 CPUs without VNNI (AVX2, early AVX-512) ONNX
          Runtime multiplies uint8 activations by int8 weights with VPMADDUBSW, whose int16 pair
          sums saturate with full-range weights, so an artifact that passed its gate on a VNNI
          build host answered 0.2-1.6 times its output's spread off on such a server.
    FP16: float16 weights and compute; inputs and outputs stay float32, so clients do not change.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tritonforge.errors import BuildError
from tritonforge.repository import STRING, Signature
from tritonforge.verify import Gate

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Precision:
    """One reduced precision: its name, default gate, and how an FP32 ONNX file becomes one."""

    name: str
    gate: Gate
    convert: Callable[[Path, Path, Arrays | None], dict]  # (fp32 onnx, destination, calibration rows) -> details
    # Part of the build's fingerprint: raise it when ``convert`` makes a different artifact, so that
    # a rebuild remakes entries an earlier recipe built instead of calling them unchanged.
    recipe: int = 1


def _has_conv(model) -> bool:
    return any(node.op_type in ("Conv", "ConvTranspose") for node in model.graph.node)


class _Rows:
    """Calibration rows for ONNX Runtime's static quantizer, a few at a time."""

    def __init__(self, rows: Arrays, batch: int = 8) -> None:
        count = len(next(iter(rows.values())))
        self.batches = iter([{k: v[i:i + batch] for k, v in rows.items()} for i in range(0, count, batch)])

    def get_next(self):
        return next(self.batches, None)


def _int8(source: Path, dest: Path, calibration: Arrays | None) -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    model = onnx.load(str(source))
    if not _has_conv(model):
        quantize_dynamic(str(source), str(dest), weight_type=QuantType.QInt8, reduce_range=True)
        return {"method": "dynamic (MatMul/Gemm weights int8 in 7 bits, activations at run time)"}
    if calibration is None:
        raise BuildError("static INT8 needs calibration rows")
    quantize_static(str(source), str(dest), _Rows(calibration), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, per_channel=True, reduce_range=True)
    return {"method": "static QDQ, MinMax calibration, per-channel weights in 7 bits",
            "calibration_rows": int(len(next(iter(calibration.values()))))}


def _fp16(source: Path, dest: Path, calibration: Arrays | None) -> dict:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save_model(model, str(dest), save_as_external_data=False)
    return {"method": "float16 weights and compute, float32 inputs and outputs"}


PRECISIONS: dict[str, Precision] = {
    "int8": Precision("int8", Gate(min_agreement=0.97, max_error=0.08), _int8, recipe=2),  # 2: 7-bit weights
    "fp16": Precision("fp16", Gate(min_agreement=0.99, max_error=0.01), _fp16),
}


def fingerprint_key(name: str) -> str:
    """How a precision enters the build's fingerprint: its name, with its recipe once that was raised
    (so fingerprints of entries built before any raise stay as they were)."""
    spec = PRECISIONS.get(name)  # None for fp32, which has no artifact of its own
    return name if spec is None or spec.recipe == 1 else f"{name}/{spec.recipe}"


def refusal(signature: Signature, neural: bool, fmt: str, precision: str) -> str | None:
    """Why this model cannot have this precision, or None."""
    if fmt != "onnx":
        return f"{precision} entries are built from ONNX artifacts; this model's format is {fmt}"
    if not neural:
        return (f"{precision} does not apply to trees and linear models (ONNX Runtime has no quantized or float16 "
                "kernels for TreeEnsemble and the ML operators); serve them as FP32")
    if any(spec.dtype == STRING for spec in signature.inputs):
        return f"{precision} needs numeric inputs; this model takes strings"
    if not any(spec.dtype == np.dtype(np.float32) for spec in signature.inputs + signature.outputs):
        return f"{precision} needs float32 tensors; this model has none"
    return None


def speed_ratio(fp32: Path, reduced: Path, rows: Arrays, repeats: int = 20) -> float:
    """In-process ONNX Runtime throughput of ``reduced`` over ``fp32`` on the same batch (median of runs)."""
    import time

    import onnxruntime as ort

    timings = []
    for path in (fp32, reduced):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run(None, rows)
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            session.run(None, rows)
            runs.append(time.perf_counter() - started)
        timings.append(float(np.median(runs)))
    return timings[0] / timings[1]
