"""``tabular``: BYTES rows (JSON objects or CSV lines) -> the model's inputs, in its feature order.

Reference: pandas reads the same JSON rows into the same columns.
"""
from __future__ import annotations

import json

import numpy as np

from tritonforge.errors import BuildError
from tritonforge.repository import DYNAMIC, STRING

from .base import RAW, Arrays, ModelFacts, Step, StepModel, raw_input


class TabularStep(Step):
    name = "tabular"
    role = "preprocess"
    allowed = {"format": "auto", "fields": None, "allow_missing": None}

    def configure(self, where: str, raw: dict, facts: ModelFacts, role: str) -> StepModel:
        settings = self.settings(where, raw)
        if settings["format"] not in ("auto", "json", "csv"):
            raise BuildError(f"{where}: 'format' must be auto, json or csv, got {settings['format']!r}")
        outputs = []
        for spec in facts.signature.inputs:
            if len(spec.shape) != 2 or spec.shape[1] == DYNAMIC:
                raise BuildError(f"{where}: tabular rows need 2-D inputs of known width, '{spec.name}' is {list(spec.shape)}")
            width = spec.shape[1]
            if width == 1 and len(facts.signature.inputs) > 1:
                fields = [spec.name]  # one input per DataFrame column
            else:
                fields = list(settings["fields"] or facts.feature_names or [f"f{i}" for i in range(width)])
            if len(fields) != width:
                raise BuildError(f"{where}: {len(fields)} field names for input '{spec.name}' of width {width}")
            outputs.append({"name": spec.name, "dtype": "string" if spec.dtype == STRING else spec.dtype.name, "fields": fields})
        allow_missing = facts.accepts_missing if settings["allow_missing"] is None else bool(settings["allow_missing"])
        step = {"format": settings["format"], "outputs": outputs, "allow_missing": allow_missing}
        return StepModel(self, role, (raw_input(),), facts.signature.inputs, step)

    def run(self, module, inputs: Arrays, step: StepModel) -> Arrays:
        return module.rows_to_inputs(inputs[RAW].reshape(-1).tolist(), step.settings)

    def reference(self, values: Arrays, step: StepModel) -> Arrays:
        import pandas as pd

        frame = pd.DataFrame.from_records([json.loads(r) for r in values[RAW].reshape(-1)])
        arrays = {}
        for output in step.settings["outputs"]:
            block = frame.reindex(columns=output["fields"])
            arrays[output["name"]] = (block.astype(object).to_numpy() if output["dtype"] == "string"
                                      else block.to_numpy(dtype=output["dtype"], na_value=np.nan))
        return arrays

    def raw_samples(self, step: StepModel, samples: Arrays) -> Arrays:
        """JSON objects carrying the model's own sample rows; NaN becomes a missing field."""
        count = len(next(iter(samples.values())))
        rows = []
        for i in range(count):
            record = {}
            for output in step.settings["outputs"]:
                for j, field in enumerate(output["fields"]):
                    value = samples[output["name"]][i, j]
                    if output["dtype"] == "string":
                        record[field] = value.decode() if isinstance(value, bytes) else str(value)
                    elif not np.isnan(value):
                        record[field] = float(value)
            rows.append(json.dumps(record))
        return {RAW: np.array(rows, dtype=object).reshape(-1, 1)}
