"""``build-repo MODELS REPO``: build a verified Triton model repository from a folder of models."""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from .. import converters
from ..errors import BuildError
from ..sidecar import DEVICES
from .pipeline import DEFAULT_MAX_BATCH_SIZE, BuildOptions, build_repository
from .releases import DEFAULT_RELEASE
from .report import line, summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="build-repo", description=__doc__.split(": ", 1)[1])
    p.add_argument("models", type=Path, help="folder of models: one file or folder per model, optional <name>.yaml sidecars")
    p.add_argument("repository", type=Path, nargs="?", default=Path("model_repository"), help="output model repository")
    p.add_argument("--format", choices=tuple(converters.FORMATS), default=None,
                   help="target format where the framework supports it (torchscript: PyTorch, savedmodel: TensorFlow, "
                        "fil: XGBoost, LightGBM, scikit-learn forests); ONNX otherwise")
    p.add_argument("--device", choices=DEVICES, default="auto", help="instance kind: auto = GPU for neural networks, CPU for trees")
    p.add_argument("--allow-pickle", action="store_true", help="load pickle-based files (.pkl, .joblib, torch.save); this runs their code")
    p.add_argument("--allow-outside", action="append", type=Path, default=[], metavar="PATH",
                   help="let sidecars and model symlinks name files under PATH, outside the models folder (repeatable)")
    p.add_argument("--precision", action="append", choices=("int8", "fp16"), default=[],
                   help="also build <name>_int8 / <name>_fp16 entries, judged by their accuracy gates (repeatable)")
    p.add_argument("--triton-version", default=DEFAULT_RELEASE, help=f"NGC Triton release to build for (default {DEFAULT_RELEASE})")
    p.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE, help="for models with a dynamic batch dimension")
    p.add_argument("--no-warmup", dest="warmup", action="store_false", help="do not add model_warmup to configs")
    p.add_argument("--fuse", action="store_true",
                   help="also build <ensemble>_fused: the ensemble's Python steps inside one ONNX graph, for every model "
                        "whose steps can be fused (a sidecar's fuse: true/false decides per model)")
    p.add_argument("--no-validate", dest="validate", action="store_false",
                   help="skip loading each entry in the bundled tritonserver and asking it its samples before it is moved in")
    return p


def _quiet_frameworks() -> None:
    """The report is the output: keep the frameworks' start-up chatter about missing GPUs and
    optional packages (torchvision) off the terminal; errors still come through."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("TORCH_LOGS", "-onnx")  # torch resets its loggers on import: ask it by name


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _quiet_frameworks()
    options = BuildOptions(args.format, args.device, args.allow_pickle, args.triton_version, args.max_batch_size, args.warmup,
                           allow_outside=tuple(args.allow_outside), precisions=tuple(args.precision), validate=args.validate,
                           fuse=args.fuse)

    def progress(index: int, total: int, name: str) -> None:
        print(f"[{index}/{total}] building {name} ...", file=sys.stderr, flush=True)

    def finished(result) -> None:  # each line as its model finishes, not after the whole build
        print(line(result), flush=True)

    try:
        results = build_repository(args.models, args.repository, options, progress, finished,
                                   notice=lambda note: print(f"build-repo: repaired: {note}", file=sys.stderr, flush=True))
    except BuildError as exc:
        print(f"build-repo: error: {exc}", file=sys.stderr)
        return 2
    print(summary(results))
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
