"""Text-model fixtures: tiny HuggingFace folders made from configs, with tokenizers trained here.

Nothing comes from a hub: each tokenizer is trained (tokenizers' WordPiece or byte-level BPE
trainer) on sentences generated from a small word list plus some non-ASCII words, each model is
a randomly initialised BERT, RoBERTa or DistilBERT with a few hidden units, and both are saved with
``save_pretrained`` as a user's folder would be. ``text_models`` makes them once per session.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = tuple(("the a cat dog sat on mat film movie was great awful good bad plot actor scene day night very not "
         "really quite long short story end begin happy sad").split())
FOREIGN = ("héllo", "wörld", "naïve", "café", "日本語", "テキスト", "привет", "😀")
MAX_LENGTH = 24  # tokens: short, so a sentence of the table goes past it
# The text table every model entry and ensemble is held to (a text past the max length, an empty
# text, non-ASCII text, and, sent together, a batch of mixed lengths).
TEXTS = (
    "the cat sat on the mat",
    " ".join(WORDS * 3),  # longer than MAX_LENGTH tokens: truncated
    "",
    "héllo wörld, naïve café 日本語 テキスト привет 😀",
    "good",
    "the film was not really very good but the actor was great",
)


def corpus(rows: int = 400, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = np.array(list(WORDS) + list(FOREIGN), dtype=object)
    return [" ".join(rng.choice(vocab, rng.integers(1, 14))) for _ in range(rows)]


def wordpiece_tokenizer(texts: list[str], **extra):
    """A BERT-style tokenizer (lowercasing WordPiece, [CLS] text [SEP]) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=300, show_progress=False,
                                        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer.train_from_iterator(texts, trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                             special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=MAX_LENGTH, **extra)


def bpe_tokenizer(texts: list[str]):
    """A RoBERTa-style tokenizer (byte-level BPE, <s> text </s>) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, show_progress=False, special_tokens=specials,
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>")))
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
                                   model_max_length=MAX_LENGTH)


def save_model(folder: Path, kind: str, *, labels: tuple[str, ...] = ("negative", "neutral", "positive")) -> Path:
    """One HuggingFace folder: ``bert`` and ``roberta`` classifiers, a ``distilbert`` encoder (embeddings)."""
    import torch
    from transformers import (BertConfig, BertForSequenceClassification, DistilBertConfig, DistilBertModel,
                              RobertaConfig, RobertaForSequenceClassification)

    texts = corpus()
    small = {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}
    head = {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}
    torch.manual_seed(0)
    if kind == "bert":
        tokenizer = wordpiece_tokenizer(texts, model_input_names=["input_ids", "token_type_ids", "attention_mask"])
        # A wide initialisation, so that the random classes are told apart by clear margins.
        config = BertConfig(vocab_size=len(tokenizer), num_hidden_layers=2, max_position_embeddings=MAX_LENGTH,
                            initializer_range=0.5, **small, **head)
        model = BertForSequenceClassification(config)
    elif kind == "roberta":
        tokenizer = bpe_tokenizer(texts)
        config = RobertaConfig(vocab_size=len(tokenizer), num_hidden_layers=2, max_position_embeddings=MAX_LENGTH + 2,
                               pad_token_id=tokenizer.pad_token_id, bos_token_id=0, eos_token_id=2, initializer_range=0.5,
                               type_vocab_size=1, **small, **head)
        model = RobertaForSequenceClassification(config)
    elif kind == "distilbert":
        tokenizer = wordpiece_tokenizer(texts)
        config = DistilBertConfig(vocab_size=len(tokenizer), n_layers=2, n_heads=2, dim=16, hidden_dim=32,
                                  max_position_embeddings=MAX_LENGTH, initializer_range=0.5)
        model = DistilBertModel(config)
    else:
        raise ValueError(kind)
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def text_models(tmp_path_factory) -> Path:
    """A models folder: ``bert_reviews`` and ``roberta_reviews`` (3-class classifiers with a text
    ensemble each) and ``distil_embed`` (normalised mean-pooled embeddings, with a text ensemble).
    Read-only for tests: copy before changing."""
    root = tmp_path_factory.mktemp("text_models")
    save_model(root / "bert_reviews", "bert")
    save_model(root / "roberta_reviews", "roberta")
    save_model(root / "distil_embed", "distilbert")
    classify = "preprocess: {step: text}\npostprocess: {step: classify, top_k: 3}\n"
    (root / "bert_reviews.yaml").write_text(classify)
    (root / "roberta_reviews.yaml").write_text(classify)
    (root / "distil_embed.yaml").write_text("preprocess: {step: text, normalize: true}\n")
    return root


@pytest.fixture(scope="session")
def built_text(text_models, tmp_path_factory):
    """The text models built once, as build-repo builds them (warmup included): (repository, results by name)."""
    from tritonforge.builder import BuildOptions, build_repository

    repo = tmp_path_factory.mktemp("text_built") / "model_repository"
    results = build_repository(text_models, repo, BuildOptions(max_batch_size=16))
    return repo, {r.name: r for r in results}


@pytest.fixture(scope="session")
def text_server(built_text):
    """The built text models served once per session (serve-repo's Triton, every entry loaded)."""
    from tritonforge.serving.server import serve

    repo, results = built_text
    failed = {n: r.reason for n, r in results.items() if r.status.name != "OK"}
    if failed:
        pytest.fail(f"text models did not build: {failed}")
    with serve(repo, control_mode="none", ready_timeout=600) as server:
        yield server
