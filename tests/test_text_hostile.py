"""Hostile text against the text ensembles, over HTTP and gRPC: each is a 400 with one clear line
naming the row and the cause, nothing of the server's files or a traceback, and the ensemble
answers a good request right after."""
from __future__ import annotations

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from test_text_models import ATOL, CLASSIFIERS, LABELS, PROTOCOLS, infer, pipeline_classes, strings

pytestmark = pytest.mark.slow
BAD_INPUT = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}
LEAKS = ("At:", "Traceback", "/tmp/", "/work/", "/root/", "site-packages", ".py(")

# (case, rows, what the client must read)
HOSTILE = [
    ("a 1 MB text", [b"good " * (200 << 10)], "row 0: text of 1024000 bytes is longer than the step's limit of 131072 bytes"),
    ("invalid UTF-8", [b"caf\xe9 au lait"], "row 0: text is not valid UTF-8 (byte 0xe9 at offset 3)"),
    ("a UTF-8 encoded surrogate", [b"\xed\xa0\x80"], "row 0: text is not valid UTF-8"),
    ("a bad second row", [b"good", b"\xff"], "row 1: text is not valid UTF-8"),
    ("10,000 rows", [b"good"] * 10_000, "batch-size must be <= 16"),
    ("no rows", [], "for inference input 'RAW' for model 'bert_reviews_ensemble', got 0"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case, rows, message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_text_is_a_clear_400_and_the_ensemble_keeps_answering(text_server, protocol, case, rows, message):
    with pytest.raises(InferenceServerException) as error:
        infer(text_server, protocol, "bert_reviews_ensemble", strings(rows), "probabilities")
    text = str(error.value)
    assert message in text
    assert error.value.status() == BAD_INPUT[protocol]
    assert "\n" not in text.strip() and not any(leak in text for leak in LEAKS), text
    answer = infer(text_server, protocol, "bert_reviews_ensemble", strings(["the cat sat on the mat"]), "probabilities")
    assert answer.shape == (1, 3) and np.isclose(answer.sum(), 1.0, atol=1e-5)


LONG = {
    "words": ("the film was not really very good but the actor was great héllo 日本語 " * 2000)[:131_000],
    "one 128 KB word": "a" * 131_072,
    "words after 100 KB of spaces": " " * 100_000 + "good film " * 3000,
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", CLASSIFIERS)
@pytest.mark.parametrize("case", LONG)
def test_a_text_up_to_the_limit_is_answered_as_the_pipeline_answers_it_cut(text_server, text_models, protocol, model, case):
    """Up to max_text_bytes a text is tokenized and cut at the model's length (the documented
    truncation), exactly as transformers cuts it, however the step shortened it first."""
    texts = [LONG[case].encode("utf-8")[:131_072].decode("utf-8", "ignore"), "good film"]
    answer = infer(text_server, protocol, f"{model}_ensemble", strings(texts), "probabilities")
    expected = pipeline_classes(text_models / model, texts)
    for row, wanted in zip(answer, expected):
        assert np.allclose([row[LABELS.index(label)] for label, _ in wanted], [s for _, s in wanted], atol=ATOL)
