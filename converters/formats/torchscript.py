"""TorchScript archives, served by Triton's ``pytorch_libtorch`` platform.

The PyTorch backend matches tensors by position through the ``<name>__<index>`` convention, so
the builder names them ``INPUT__0..`` and ``OUTPUT__0..``; the archive itself records no names.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import BuildError
from ..spec import Signature
from . import register


def input_name(index: int) -> str:
    return f"INPUT__{index}"


def output_name(index: int) -> str:
    return f"OUTPUT__{index}"


class TorchScriptFormat:
    name = "torchscript"
    platform = "pytorch_libtorch"
    filename = "model.pt"

    def read_signature(self, path: Path, declared: Signature | None) -> Signature:
        if declared is None:
            raise BuildError(f"{path.name}: a TorchScript archive records no tensor shapes; give 'inputs' in the sidecar")
        return declared

    def runner(self, path: Path):
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location="cpu").eval()

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            ordered = [torch.from_numpy(np.ascontiguousarray(inputs[input_name(i)])) for i in range(len(inputs))]
            with torch.no_grad():
                result = module(*ordered)
            if isinstance(result, torch.Tensor):
                result = (result,)
            return {output_name(i): t.detach().numpy() for i, t in enumerate(result)}

        return run


register(TorchScriptFormat())
