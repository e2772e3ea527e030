"""What each NGC Triton release can serve and which config keys its backends read: one table of
release rules, so a repository is built for the release that will run it.

Each rule cites the backend documentation it follows. Nothing here could be loaded by a GPU,
TensorRT or newer-release server in this project's CI: the tests check configs against these rules.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import BuildError

# The nvidia-pytriton wheel bundles tritonserver 2.51.0, which is NGC release 24.10: building for it
# by default means the local server and docker-compose's image serve the same repository.
DEFAULT_RELEASE = "24.10"


@dataclass(frozen=True)
class ReleaseRules:
    """What the backends of releases from ``since`` on read (until the next row)."""

    since: tuple[int, int]
    tensorflow: bool  # the TensorFlow backend ships in the image
    ort_tensorrt_keys: tuple[str, ...]  # gpu_execution_accelerator "tensorrt" parameters of the ONNX Runtime backend
    ort_openvino: bool  # cpu_execution_accelerator "openvino" of the ONNX Runtime backend
    ort_cuda_graphs: bool  # "trt_cuda_graph_enable" in the tensorrt accelerator
    fil_classifier_key: str  # the FIL backend's classifier/regressor switch
    fil_gpu_parameters: tuple[tuple[str, str], ...]  # FIL's GPU-only settings, written in configs/gpu.pbtxt
    source: str  # the documentation this row follows
    # How an XGBoost 3.1+ booster's per-class/per-target intercepts reach FIL: "folded" into one tree
    # of each class (Treelite before 4.6 reads a scalar base_score only) or "native" (the vector as saved).
    fil_intercepts: str = "folded"


_BASE_TRT_KEYS = ("precision_mode", "max_workspace_size_bytes", "trt_engine_cache_enable", "trt_engine_cache_path")
# FIL's documented defaults (fil_backend docs/model_config.md at 06d9fb7ae89aa17be5f7e0867e1537950d01974f, the
# r24.x text: "algo", "storage_type", "threads_per_tree" are GPU only), written out so tune-repo and readers see them.
_FIL_LEGACY_GPU = (("algo", "ALGO_AUTO"), ("storage_type", "AUTO"), ("threads_per_tree", "1"))
# 25.09's FIL (cuML's new forest inference) reads "layout" (depth_first, breadth_first, layered_children_together:
# libcuml fil/tree_layout.hpp) and "chunk_size"; the old keys are gone. chunk_size is left to FIL, which picks it.
_FIL_NEW_GPU = (("layout", "depth_first"),)
# Treelite learned XGBoost 3.1's vector base_score in its 4.6 line (dmlc/treelite PR#638, "Support XGBoost 3.1");
# fil_backend ships Treelite 4.4.1 up to 25.12 and 4.6.1 from 26.01 (fil_backend git history, DESIGN.md round 3).
# Checked here with the treelite 4.4.1 wheel (2026-12-04): it refuses XGBoost 3.2's vector base_score ("stof") and
# reads the folded form as XGBoost answers (iris multiclass 6e-8; two-target squared-error and Poisson 5e-5 on ~150);
# the 4.6.1 wheel reads both forms alike (native: 6e-8, 3e-5, 2e-4).
_FIL_INTERCEPTS_SOURCE = ("XGBoost 3.1+ intercepts: folded into trees up to 25.12 (Treelite 4.4.1 reads a scalar base_score), "
                          "native from 26.01 (Treelite 4.6.1; dmlc/treelite PR#638)")
_FIL_LEGACY_SOURCE = ("fil_backend docs/model_config.md (06d9fb7ae89aa17be5f7e0867e1537950d01974f): output_class, predict_proba, "
                      "algo/storage_type/threads_per_tree GPU only; " + _FIL_INTERCEPTS_SOURCE)

RULES = (
    ReleaseRules(
        since=(24, 10), tensorflow=True, ort_tensorrt_keys=_BASE_TRT_KEYS, ort_openvino=True, ort_cuda_graphs=False,
        fil_classifier_key="output_class", fil_gpu_parameters=_FIL_LEGACY_GPU,
        source=(_FIL_LEGACY_SOURCE + "; "
                "triton-inference-server/onnxruntime_backend r24.10 (17e5cb23a6fbeb37282eb7079dd0b580cd79530d) README.md, "
                "'ONNX Runtime with TensorRT optimization', 'ONNX Runtime with OpenVINO optimization', 'Other Optimization "
                "Options'; CUDA graphs not emitted: trt_cuda_graph_enable is not verifiable for this tag here"),
    ),
    ReleaseRules(
        since=(25, 3), tensorflow=False, ort_tensorrt_keys=_BASE_TRT_KEYS, ort_openvino=False, ort_cuda_graphs=True,
        fil_classifier_key="output_class", fil_gpu_parameters=_FIL_LEGACY_GPU,
        source=(_FIL_LEGACY_SOURCE + "; "
                "triton-inference-server/onnxruntime_backend README.md at 013d274504599ff36f0a9518322adb5b760c03d1 "
                "(parameter mapping lists trt_cuda_graph_enable); the TensorFlow backend is deprecated in 25.03 and absent "
                "after; OpenVINO not offered: server tools/build/build_presets.example.json builds the ONNX Runtime backend "
                "with TRITON_ENABLE_ONNXRUNTIME_OPENVINO OFF"),
    ),
    ReleaseRules(
        since=(25, 9), tensorflow=False, ort_tensorrt_keys=_BASE_TRT_KEYS, ort_openvino=False, ort_cuda_graphs=True,
        fil_classifier_key="is_classifier", fil_gpu_parameters=_FIL_NEW_GPU,
        source=("fil_backend docs/model_config.md as published for 25.09 (docs.nvidia.com user-guide fil_backend "
                "model_config.html): is_classifier replaces output_class; algo, storage_type and threads_per_tree are gone, "
                "layout and chunk_size are new; the ONNX Runtime rules are 25.03's; " + _FIL_INTERCEPTS_SOURCE),
    ),
    ReleaseRules(
        since=(26, 1), tensorflow=False, ort_tensorrt_keys=_BASE_TRT_KEYS, ort_openvino=False, ort_cuda_graphs=True,
        fil_classifier_key="is_classifier", fil_gpu_parameters=_FIL_NEW_GPU, fil_intercepts="native",
        source=("25.09's rules (fil_backend docs/model_config.md as published for 25.09; onnxruntime_backend README.md as "
                "for 25.03); " + _FIL_INTERCEPTS_SOURCE),
    ),
)


@dataclass(frozen=True)
class TritonRelease:
    name: str  # NGC tag, e.g. "24.10"
    year: int
    month: int

    @property
    def image(self) -> str:
        return f"nvcr.io/nvidia/tritonserver:{self.name}-py3"

    @property
    def rules(self) -> ReleaseRules:
        applicable = [r for r in RULES if r.since <= (self.year, self.month)]
        return applicable[-1] if applicable else RULES[0]

    def serves(self, platform: str) -> bool:
        if platform == "tensorflow_savedmodel":
            return self.rules.tensorflow
        return True

    def refuse_unservable(self, platform: str) -> None:
        if not self.serves(platform):
            raise BuildError(
                f"Triton {self.name} has no TensorFlow backend (gone after 25.02): build this model as ONNX, "
                "or pass --triton-version 25.02 or older"
            )


def parse_release(text: str) -> TritonRelease:
    try:
        year, month = (int(part) for part in text.split("."))
        if not (20 <= year <= 99 and 1 <= month <= 12):
            raise ValueError
    except ValueError:
        raise BuildError(f"--triton-version {text!r}: expected an NGC release such as 24.10 or 25.02") from None
    if (year, month) < RULES[0].since:
        raise BuildError(f"--triton-version {text}: releases before {RULES[0].since[0]}.{RULES[0].since[1]:02d} are not covered "
                         "(per-hardware configs and the config keys written need 24.10 or newer)")
    return TritonRelease(f"{year:02d}.{month:02d}", year, month)
