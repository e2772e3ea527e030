"""What a served model takes and gives, read from the server (metadata and config), not assumed.

    spec = ModelSpec.from_server(metadata, config)      # dicts from HTTP, or gRPC as_json
    spec.input("input")          # TensorSpec('input', dtype('float32'), (-1, 4)); .datatype == 'FP32'
    spec.labelled_outputs        # ('probabilities',): outputs with a label_filename
    spec.default_top_k           # 2: the class count the model's build asks clients for (0: none set)

HTTP and gRPC return the same documents except that gRPC's JSON writes 64-bit integers as
strings ("-1"); both are read into the same values here.
"""
from __future__ import annotations

from dataclasses import dataclass

from tritonforge.repository import TensorSpec, numpy_dtype

# An ensemble built with ``postprocess: {step: classify, top_k: N}`` records N here (see ensembles/).
TOP_K_PARAMETER = "tritonforge_top_k"


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
    default_top_k: int = 0

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
            default_top_k=_top_k(config),
        )

    def top_k(self, asked: int | None, fallback: int = 3) -> int:
        """Classes per row to ask for: what the caller asked, else the build's default, else ``fallback``."""
        return asked if asked is not None else (self.default_top_k or fallback)

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

    def output_width(self, name: str) -> int:
        """An output's last dimension (a classifier's class count), or 0 where it is not fixed."""
        for tensor in self.outputs:
            if tensor.name == name and tensor.shape:
                return max(int(tensor.shape[-1]), 0)
        return 0

    def describe(self) -> str:
        def one(t: TensorSpec) -> str:
            return f"{t.name}:{t.datatype}[{','.join(str(d) for d in t.shape)}]"

        return f"{', '.join(one(t) for t in self.inputs)} -> {', '.join(one(t) for t in self.outputs)}"


def _top_k(config: dict) -> int:
    value = (config.get("parameters") or {}).get(TOP_K_PARAMETER, {}).get("string_value", "")
    return int(value) if value.isdigit() else 0
