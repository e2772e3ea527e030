"""TorchScript archives, served by Triton's ``pytorch_libtorch`` platform.

The PyTorch backend matches tensors by position through the ``<name>__<index>`` convention, so
the builder names them ``INPUT__0..`` and ``OUTPUT__0..``; the archive itself records no names.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tritonforge.errors import BuildError
from .base import FormatDefaults
from tritonforge.repository import Signature


def input_name(index: int) -> str:
    return f"INPUT__{index}"


def output_name(index: int) -> str:
    return f"OUTPUT__{index}"


class TorchScriptFormat(FormatDefaults):
    name = "torchscript"
    platform = "pytorch_libtorch"
    filename = "model.pt"

    def read_signature(self, path: Path, declared: Signature | None) -> Signature:
        if declared is None:
            raise BuildError(f"{path.name}: a TorchScript archive records no tensor shapes; give 'inputs' in the sidecar")
        return declared

    def runner(self, path: Path):
        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return run_isolated(path, inputs)

        return run


# A traced archive can hold shapes fixed at trace time (an LSTM's initial state, say); run at
# another batch size it corrupts memory and aborts the process. Verification therefore runs it
# in a child process, so that such an artifact fails its own model, not the whole build.
_CHILD = """
import sys, warnings
import numpy as np, torch
warnings.simplefilter("ignore")
module = torch.jit.load(sys.argv[1], map_location="cpu").eval()
with np.load(sys.argv[2]) as data:
    ordered = [torch.from_numpy(np.ascontiguousarray(data[f"INPUT__{i}"])) for i in range(len(data.files))]
with torch.no_grad():
    result = module(*ordered)
if isinstance(result, torch.Tensor):
    result = (result,)
np.savez(sys.argv[3], **{f"OUTPUT__{i}": t.detach().numpy() for i, t in enumerate(result)})
"""


def run_isolated(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import signal
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tritonforge-torchscript-") as scratch:
        given, answer = Path(scratch) / "inputs.npz", Path(scratch) / "outputs.npz"
        np.savez(given, **{input_name(i): inputs[input_name(i)] for i in range(len(inputs))})
        done = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(given), str(answer)],
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            rows = len(next(iter(inputs.values())))
            if done.returncode < 0:
                cause = f"crashed ({signal.Signals(-done.returncode).name})"
            else:
                lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
                cause = f"failed ({lines[-1] if lines else f'exit {done.returncode}'})"
            raise BuildError(f"{path.name}: the TorchScript archive {cause} when run on {rows} rows; tracing may "
                             "have fixed a shape it depends on: build this model as ONNX")
        with np.load(answer) as data:
            return {name: data[name] for name in data.files}

