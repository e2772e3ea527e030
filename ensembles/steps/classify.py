"""Classification postprocessing: scores (or logits) -> top-k class names and scores.

Config parameter ``tritonforge_step`` (JSON)::

    {"input": "probabilities", "labels": ["cat", "dog"], "top_k": 2, "softmax": false}
"""
import json

import numpy as np

STEP_PARAMETER = "tritonforge_step"
LABELS_OUTPUT = "LABELS"
SCORES_OUTPUT = "SCORES"


def top_k(scores, spec):
    """(labels, scores) of the k best classes per row, best first; softmax first for logits."""
    scores = np.asarray(scores, dtype=np.float32).reshape(len(scores), -1)
    if spec["softmax"]:
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores = shifted / shifted.sum(axis=1, keepdims=True)
    k = min(spec["top_k"], scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    labels = np.asarray([label.encode("utf-8") for label in spec["labels"]], dtype=np.object_)
    return labels[order], np.take_along_axis(scores, order, axis=1).astype(np.float32)


class TritonPythonModel:
    def initialize(self, args):
        global pb_utils
        import triton_python_backend_utils as pb_utils

        config = json.loads(args["model_config"])
        self.spec = json.loads(config["parameters"][STEP_PARAMETER]["string_value"])

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, self.spec["input"]).as_numpy() for r in requests]
        labels, scores = top_k(np.concatenate(arrays), self.spec)  # one pass over every request's rows
        responses, offset = [], 0
        for array in arrays:
            count = len(array)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor(LABELS_OUTPUT, labels[offset:offset + count]),
                pb_utils.Tensor(SCORES_OUTPUT, scores[offset:offset + count]),
            ]))
            offset += count
        return responses
