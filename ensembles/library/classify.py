"""``classify``: the model's scores answered as labels with scores by Triton itself, no Python step.

The ensemble's output is the model's scores output with the model's ``label_filename``; a client
that asks for ``class_count: k`` (``triton-infer --top-k``, tritonclient's ``class_count``) gets
"score:index:label" for the k best classes of each row from Triton's classification extension.
``top_k`` becomes the ensemble's ``tritonforge_top_k`` parameter: the class count triton-infer and
the load tests ask for when not told.

Softmax is tensor math, so it belongs in the model graph: a model whose scores are logits is
refused (``softmax: auto`` or ``true``) unless ``softmax: false`` accepts logits as the scores
(Triton ranks them the same way; the scores shown are then logits).

Reference for verification: an independent numpy top-k over the source model's scores.
"""
from __future__ import annotations

import numpy as np

from tritonforge.errors import BuildError

from .base import Arrays, Classification, ModelFacts, Step

TOP_K_PARAMETER = "tritonforge_top_k"  # ensemble config parameter: the default class count clients ask for


class ClassifyStep(Step):
    name = "classify"
    role = "postprocess"
    allowed = {"top_k": 3, "softmax": "auto"}

    def configure(self, where: str, raw: dict, facts: ModelFacts, role: str) -> Classification:
        settings = self.settings(where, raw)
        if not facts.labels or not facts.scores_output:
            raise BuildError(f"{where}: the classify step needs class names: give 'labels' in the sidecar")
        if settings["softmax"] not in ("auto", True, False):
            raise BuildError(f"{where}: 'softmax' must be auto, true or false, got {settings['softmax']!r}")
        scores = next(s for s in facts.signature.outputs if s.name == facts.scores_output)
        wants_softmax = settings["softmax"] is True or (settings["softmax"] == "auto" and not facts.outputs_are_probabilities)
        if wants_softmax:
            raise BuildError(
                f"{where}: output '{scores.name}' gives logits, not probabilities, and softmax is tensor math that "
                "belongs in the model: end the model with a softmax (Keras activation='softmax', torch.softmax in "
                "forward), or set 'softmax: false' to answer the logits as scores")
        top_k = settings["top_k"]
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise BuildError(f"{where}: 'top_k' must be a whole number of at least 1, got {top_k!r}")
        return Classification(self, scores, tuple(facts.labels), min(top_k, len(facts.labels)))


def top_classes(values: Arrays, classification: Classification) -> list[list[str]]:
    """The ``top_k`` labels of each row, best first (ties in class order), as Triton's
    classification extension names them: used to compare the served path with the source's."""
    scores = np.asarray(values[classification.output.name], dtype=np.float64)
    scores = scores.reshape(len(scores), -1)
    best = np.argsort(-scores, axis=1, kind="stable")[:, : classification.top_k]
    return np.array(classification.labels, dtype=object)[best].tolist()
