"""``classify``: scores or logits -> ``LABELS`` (BYTES) and ``SCORES`` (top-k, best first).

Reference: an independent numpy top-k.
"""
from __future__ import annotations

import numpy as np

from tritonforge.errors import BuildError
from tritonforge.repository import DYNAMIC, STRING, TensorSpec

from .base import Arrays, ModelFacts, Step, StepModel


class ClassifyStep(Step):
    name = "classify"
    role = "postprocess"
    allowed = {"top_k": 3, "softmax": "auto"}

    def configure(self, where: str, raw: dict, facts: ModelFacts, role: str) -> StepModel:
        settings = self.settings(where, raw)
        if not facts.labels or not facts.scores_output:
            raise BuildError(f"{where}: the classify step needs class names: give 'labels' in the sidecar")
        scores = next(s for s in facts.signature.outputs if s.name == facts.scores_output)
        softmax = (not facts.outputs_are_probabilities) if settings["softmax"] == "auto" else bool(settings["softmax"])
        k = min(int(settings["top_k"]), len(facts.labels))
        step = {"input": scores.name, "labels": list(facts.labels), "top_k": k, "softmax": softmax}
        outputs = (TensorSpec("LABELS", STRING, (DYNAMIC, k)), TensorSpec("SCORES", np.dtype(np.float32), (DYNAMIC, k)))
        return StepModel(self, role, (scores,), outputs, step)

    def run(self, module, inputs: Arrays, step: StepModel) -> Arrays:
        return dict(zip(("LABELS", "SCORES"), module.top_k(inputs[step.settings["input"]], step.settings)))

    def reference(self, values: Arrays, step: StepModel) -> Arrays:
        settings = step.settings
        scores = np.asarray(values[settings["input"]], dtype=np.float64)
        if settings["softmax"]:
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
        best = np.argsort(-scores, axis=1, kind="stable")[:, : settings["top_k"]]
        labels = np.array(settings["labels"], dtype=object)[best]
        return {"LABELS": labels, "SCORES": np.take_along_axis(scores, best, axis=1)}
