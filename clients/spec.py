"""What a served model takes and gives, read from the server (metadata and config), not assumed.

    spec = ModelSpec.from_server(metadata, config)      # dicts from HTTP, or gRPC as_json
    spec.input("input")          # TensorSpec(name='input', datatype='FP32', shape=(-1, 4))
    spec.labelled_outputs        # ('probabilities',): outputs with a label_filename

HTTP and gRPC return the same documents except that gRPC's JSON writes 64-bit integers as
strings ("-1"); both are read into the same values here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# KServe v2 datatypes and the numpy dtype a tensor of that type is built from.
NUMPY_OF_DATATYPE = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the server declares it.

    >>> TensorSpec("input", "FP32", (-1, 4))   # any batch, 4 features
    ``shape`` is the full shape from the model metadata (batch dimension included when the
    model batches); -1 marks a free dimension.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def numpy_dtype(self):
        return NUMPY_OF_DATATYPE.get(self.datatype, np.object_)


@dataclass(frozen=True)
class ModelSpec:
    """A served model's contract: name, version, platform, tensors, batching, labelled outputs."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int = 0
    labelled_outputs: tuple[str, ...] = ()

    @classmethod
    def from_server(cls, metadata: dict, config: dict) -> "ModelSpec":
        config = config.get("config", config)  # gRPC's as_json wraps the config

        def tensors(items):
            return tuple(
                TensorSpec(t["name"], t["datatype"], tuple(int(d) for d in t.get("shape", ())))
                for t in items or ()
            )

        return cls(
            name=metadata["name"],
            versions=tuple(str(v) for v in metadata.get("versions", ())),
            platform=metadata.get("platform", config.get("platform", "")),
            inputs=tensors(metadata.get("inputs")),
            outputs=tensors(metadata.get("outputs")),
            max_batch_size=int(config.get("max_batch_size", 0) or 0),
            labelled_outputs=tuple(o["name"] for o in config.get("output", ()) if o.get("label_filename")),
        )

    @property
    def is_ensemble(self) -> bool:
        return self.platform == "ensemble"

    @property
    def batches(self) -> bool:
        return self.max_batch_size > 0

    def input(self, name: str) -> TensorSpec:
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor
        raise KeyError(name)

    def describe(self) -> str:
        def one(t: TensorSpec) -> str:
            return f"{t.name}:{t.datatype}[{','.join(str(d) for d in t.shape)}]"

        return f"{', '.join(one(t) for t in self.inputs)} -> {', '.join(one(t) for t in self.outputs)}"
