"""What a served model takes and gives, read from the server (metadata and config), not assumed.

    spec = ModelSpec.from_server(metadata, config)      # dicts from HTTP, or gRPC as_json
    spec.input("input")          # TensorSpec('input', dtype('float32'), (-1, 4)); .datatype == 'FP32'
    spec.labelled_outputs        # ('probabilities',): outputs with a label_filename

HTTP and gRPC return the same documents except that gRPC's JSON writes 64-bit integers as
strings ("-1"); both are read into the same values here.
"""
from __future__ import annotations

from dataclasses import dataclass

from tritonforge.repository import TensorSpec, numpy_dtype


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
                TensorSpec(t["name"], numpy_dtype(t["datatype"]), tuple(int(d) for d in t.get("shape", ())))
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
