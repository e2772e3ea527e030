"""HuggingFace folders at build time: what is refused (one line naming the folder and the cause),
what ``--allow-pickle`` and ``task:`` change, and ``.pt2`` exports of transformers models with
and without transformers importable."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tritonforge.builder import BuildOptions, build_repository
from tritonforge.errors import BuildError
from tritonforge.ensembles.library import ModelFacts, make_step
from tritonforge.repository import Signature, TensorSpec

INT = np.dtype("int64")
TEXT_SIGNATURE = Signature((TensorSpec("input_ids", INT, (-1, -1)), TensorSpec("attention_mask", INT, (-1, -1))),
                           (TensorSpec("embedding", np.dtype("float32"), (-1, 16)),))


def build_one(tmp_path, text_models, change=None, sidecar: str | None = None, **options):
    """Copy bert_reviews into a fresh models folder, break it with ``change``, build it alone."""
    models = tmp_path / "models"
    folder = models / "reviews"
    shutil.copytree(text_models / "bert_reviews", folder)
    if change:
        change(folder)
    if sidecar:
        (models / "reviews.yaml").write_text(sidecar)
    return {r.name: r for r in build_repository(models, tmp_path / "repo", BuildOptions(**options))}


def _pickled_weights(folder):
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()


REFUSED = [
    ("no weights", lambda f: (f / "model.safetensors").unlink(), None,
     "reviews: has config.json but no weights (model.safetensors or pytorch_model.bin)"),
    ("pickled weights without --allow-pickle", _pickled_weights, None,
     "reviews: its weights are pytorch_model.bin, a pickle, and loading it runs code from the file; pass --allow-pickle"),
    ("no tokenizer", lambda f: [(f / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json")], None,
     "reviews: has no tokenizer (tokenizer.json, or the vocabulary files a slow tokenizer needs)"),
    ("an unknown task", None, "preprocess: {step: text, task: translation}\n",
     "reviews: task 'translation' is not one of classification, embedding"),
    ("normalize not a boolean", None, "preprocess: {step: text, normalize: maybe}\n",
     "reviews: 'normalize' must be true or false, got 'maybe'"),
    ("config.json that is not JSON", lambda f: (f / "config.json").write_text("{not json"), None,
     "reviews: not a model this tool recognises (folder matched none"),
    ("an unknown text step key", None, "preprocess: {step: text, lowercase: true}\n",
     "unknown key 'lowercase' (allowed: step, task, normalize, max_text_bytes)"),
]


@pytest.mark.parametrize("case, change, sidecar, message", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_broken_folder_is_refused_with_its_cause(tmp_path, text_models, case, change, sidecar, message):
    results = build_one(tmp_path, text_models, change, sidecar)
    assert results["reviews"].status.name == "FAILED"
    assert message in results["reviews"].reason
    assert "\n" not in results["reviews"].reason
    assert not (tmp_path / "repo" / "reviews").exists()


@pytest.mark.parametrize("raw, message", [
    ({"step": "text"}, "plain.onnx: preprocess: the text step needs a HuggingFace model folder (config.json and its tokenizer files)"),
    ({"step": "text", "max_text_bytes": 0}, "'max_text_bytes' must be a whole number of at least 1, got 0"),
])
def test_the_text_step_refuses_what_it_cannot_serve(tmp_path, raw, message):
    facts = ModelFacts(TEXT_SIGNATURE, None, False, None, None, False, tmp_path)
    with pytest.raises(BuildError) as error:
        make_step("preprocess", raw, facts, "plain.onnx")
    assert message in str(error.value)


CUTS = [
    ("BERT's pre-tokenizer", {"type": "BertPreTokenizer"}, "right", 4096),
    ("byte-level BPE with its regex", {"type": "ByteLevel", "use_regex": True}, "right", 4096),
    ("a sequence of whitespace splits", {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, {"type": "Digits"}]}, "right", 4096),
    ("byte-level without its regex", {"type": "ByteLevel", "use_regex": False}, "right", 0),
    ("sentencepiece that does not split", {"type": "Metaspace", "split": False}, "right", 0),
    ("no pre-tokenizer", None, "right", 0),
    ("left truncation", {"type": "BertPreTokenizer"}, "left", 0),
]


@pytest.mark.parametrize("case, pre_tokenizer, side, expected", CUTS, ids=[c[0] for c in CUTS])
def test_a_long_text_is_cut_before_tokenizing_only_where_that_keeps_its_tokens(tmp_path, case, pre_tokenizer, side, expected):
    import json

    from tritonforge.ensembles.library.text import cut_chars

    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"pre_tokenizer": pre_tokenizer}))
    assert cut_chars(path, 512, side) == expected


@pytest.mark.slow
def test_pickled_weights_build_with_allow_pickle(tmp_path, text_models):
    results = build_one(tmp_path, text_models, _pickled_weights, allow_pickle=True)
    assert results["reviews"].status.name == "OK", results["reviews"].reason
    assert [t.name for t in results["reviews"].signature.outputs] == ["probabilities", "logits"]


@pytest.mark.slow
def test_task_embedding_serves_a_classifiers_encoder_as_embeddings(tmp_path, text_models):
    results = build_one(tmp_path, text_models, sidecar="preprocess: {step: text, task: embedding}\n")
    assert {n: r.status.name for n, r in results.items()} == {"reviews": "OK", "reviews_preprocess": "OK", "reviews_ensemble": "OK"}
    assert results["reviews"].signature.describe().endswith("-> embedding:float32[?x16]")


def _slow_tokenizer_only(folder):
    """What an older folder holds: a BERT tokenizer's vocab.txt and tokenizer_config.json, no tokenizer.json."""
    import json

    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    (folder / "vocab.txt").write_text("".join(f"{word}\n" for word, _ in sorted(vocab.items(), key=lambda item: item[1])))
    (folder / "tokenizer.json").unlink()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("backend", None)
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "BertTokenizer"}))


@pytest.mark.slow
def test_a_folder_with_a_slow_tokenizers_files_gets_a_text_ensemble_too(tmp_path, text_models):
    """The step runs the tokenizer.json transformers converts the vocabulary to, verified against transformers."""
    results = build_one(tmp_path, text_models, _slow_tokenizer_only, sidecar="preprocess: {step: text}\n")
    assert {n: r.status.name for n, r in results.items()} == {"reviews": "OK", "reviews_preprocess": "OK", "reviews_ensemble": "OK"}
    assert (tmp_path / "repo" / "reviews_preprocess" / "1" / "tokenizer.json").is_file()


@pytest.mark.slow
def test_a_rebuild_of_an_unchanged_folder_writes_nothing(tmp_path, text_models):
    from fixtures_build import tree_digest

    first = build_one(tmp_path, text_models, sidecar="preprocess: {step: text}\npostprocess: {step: classify}\n")
    assert {r.status.name for r in first.values()} == {"OK"}
    before = tree_digest(tmp_path / "repo")
    again = {r.name: r for r in build_repository(tmp_path / "models", tmp_path / "repo")}
    assert {n: r.status.name for n, r in again.items()} == {n: "UNCHANGED" for n in first}
    assert tree_digest(tmp_path / "repo") == before


def export_as_is(folder, path, keywords: bool):
    """A transformers classifier exported with torch.export as it is (its output is a
    SequenceClassifierOutput), its tensors given in order or by keyword."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    ids = torch.randint(5, 50, (2, 7))
    batch, sequence = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("sequence", min=2, max=24)
    tensors = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    args, kwargs = ((), tensors) if keywords else (tuple(tensors.values()), None)
    program = torch.export.export(model, args, kwargs, strict=False,
                                  dynamic_shapes={"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}})
    torch.export.save(program, str(path))


PT2 = ("reviews", "reviews_by_keyword")


@pytest.fixture(scope="module")
def pt2_models(text_models, tmp_path_factory):
    models = tmp_path_factory.mktemp("pt2")
    export_as_is(text_models / "roberta_reviews", models / "reviews.pt2", keywords=False)
    export_as_is(text_models / "roberta_reviews", models / "reviews_by_keyword.pt2", keywords=True)
    return models


@pytest.mark.slow
def test_a_transformers_pt2_export_loads_and_is_verified(pt2_models, tmp_path):
    results = {r.name: r for r in build_repository(pt2_models, tmp_path / "repo")}
    assert sorted(results) == sorted(PT2)
    for name in PT2:
        assert results[name].status.name == "OK", results[name].reason
        assert [t.name for t in results[name].signature.outputs] == ["logits"]
        assert [t.name for t in results[name].signature.inputs] == ["input_ids", "attention_mask"]
        assert all(e.ok for e in results[name].errors)


@pytest.mark.slow
def test_without_transformers_the_pt2_refusal_names_the_missing_package(pt2_models, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.modules["transformers"] = None  # not importable, as on a machine without tritonforge[text]
        from pathlib import Path
        from tritonforge.builder import build_repository
        for result in build_repository(Path({str(pt2_models)!r}), Path({str(tmp_path / "repo")!r})):
            print(result.status.name, result.reason)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-2:] == [
        f"FAILED {name}.pt2: was exported from a transformers model and answers its output types; "
        "loading it needs the 'transformers' package (pip install 'tritonforge[text]')" for name in PT2]
