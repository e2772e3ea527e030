"""HuggingFace ``save_pretrained`` folders: ``config.json``, weights and the tokenizer's files, one model.

Two tasks, chosen by the config's ``architectures`` (``...ForSequenceClassification`` classifies,
anything else embeds) or by the text step's ``task:`` in the sidecar:

- ``classification``: any architecture ``AutoModelForSequenceClassification`` loads; the artifact
  answers ``probabilities`` (what ``pipeline("text-classification")`` scores: softmax, or sigmoid
  for one label or multi-label models; labels from ``id2label``) and ``logits``; a regression
  head answers ``logits`` alone;
- ``embedding``: the encoder's last hidden state mean-pooled over the attention mask
  (``normalize: true`` makes it unit length), answered as ``embedding``.

Inputs are named as the tokenizer names them (``input_ids``, ``attention_mask``, ``token_type_ids``
where the model takes them), int64, dynamic in batch and sequence. Nothing is downloaded: the
folder must hold everything (``local_files_only``), and no remote code runs. ``pytorch_model.bin``
is a pickle and is read only with ``--allow-pickle``.
"""
from __future__ import annotations

import inspect
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonforge.errors import BuildError
from tritonforge.repository import Signature
from tritonforge.sidecar import Sidecar
from ..formats.onnx import rename_tensors, save_single_file
from ..probe import FileProbe, one_line
from .base import AdapterBase, by_position

CONFIG = "config.json"
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
MAX_CONFIG_BYTES = 1 << 20
TASKS = ("classification", "embedding")
INSTALL_HINT = "pip install 'tritonforge[text]'"
# Sentences of a few words each, for sample rows: long enough to pad, short enough to stay exact.
SAMPLE_WORDS = (3, 0, 9, 1, 17, 5, 2, 12)
# RoBERTa-style models number positions from padding_idx + 1: that many positions are not usable.
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer", "bart", "mbart", "xmod", "roberta-prelayernorm")
UNSET_MAX_LENGTH = 1_000_000  # transformers' VERY_LARGE_INTEGER means the tokenizer sets no limit


@dataclass
class TextSource:
    """A loaded folder: the model and tokenizer, and what the artifact will take and answer."""

    folder: Path
    model: Any  # transformers PreTrainedModel, eval mode
    tokenizer: Any  # transformers tokenizer
    task: str  # classification | embedding
    input_names: tuple[str, ...]  # as the tokenizer names them, only those forward takes
    max_length: int  # tokens a text is truncated to (specials included)
    normalize: bool = False  # embedding: unit length
    scores: str | None = None  # classification: softmax | sigmoid | None (regression)


def read_config(folder: Path) -> dict | None:
    """config.json as a mapping, or None when it is missing, too large or not a JSON object."""
    path = folder / CONFIG
    try:
        if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def text_settings(sidecar: Sidecar) -> dict:
    """``task`` and ``normalize`` from the sidecar: its own keys, else the text step's settings
    (``preprocess: {step: text, task: ..., normalize: ...}``)."""
    if sidecar is None:
        return {}
    step = sidecar.preprocess
    settings = dict(step) if isinstance(step, dict) and step.get("step") == "text" else {}
    settings.update({k: v for k, v in (("task", sidecar.task), ("normalize", sidecar.normalize)) if v is not None})
    return settings


def max_tokens(tokenizer: Any, config: Any) -> int:
    """Tokens a text is cut to: the tokenizer's ``model_max_length``, never more than the model has positions for."""
    positions = getattr(config, "max_position_embeddings", None) or UNSET_MAX_LENGTH
    if getattr(config, "model_type", "") in OFFSET_POSITIONS:
        positions -= (getattr(config, "pad_token_id", None) or 0) + 1
    declared = int(getattr(tokenizer, "model_max_length", 0) or 0)
    limit = min(declared, positions) if 0 < declared < UNSET_MAX_LENGTH else positions
    if limit >= UNSET_MAX_LENGTH:
        raise BuildError("neither the tokenizer (model_max_length) nor config.json (max_position_embeddings) says how long a text may be")
    return int(limit)


class HuggingFaceAdapter(AdapterBase):
    framework = "huggingface"
    formats = ("onnx",)
    neural = True

    def detect(self, probe: FileProbe) -> bool:
        if not probe.path.is_dir():
            return False
        config = read_config(probe.path)
        return config is not None and ("model_type" in config or "architectures" in config)

    def load(self, probe: FileProbe, sidecar: Sidecar) -> TextSource:
        folder, name = probe.path, probe.path.name
        transformers = _import_transformers(name)
        config_raw = read_config(folder) or {}
        settings = text_settings(sidecar)
        task = settings.get("task") or _task_of(config_raw)
        if task not in TASKS:
            raise BuildError(f"{name}: task {task!r} is not one of {', '.join(TASKS)}")
        use_safetensors = _weights(folder, name, probe.allow_pickle)
        if not any((folder / f).is_file() for f in TOKENIZER_FILES):
            raise BuildError(f"{name}: has no tokenizer (tokenizer.json, or the vocabulary files a slow tokenizer needs): "
                             "save it beside the model with tokenizer.save_pretrained(folder)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a folder is all there is: never ask a hub
        auto = transformers.AutoModelForSequenceClassification if task == "classification" else transformers.AutoModel
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            except Exception as exc:
                raise BuildError(f"{name}: transformers cannot load its tokenizer ({one_line(exc)})") from None
            try:
                model = auto.from_pretrained(str(folder), local_files_only=True, use_safetensors=use_safetensors,
                                             trust_remote_code=False).eval()
            except Exception as exc:
                raise BuildError(f"{name}: transformers cannot load it as {auto.__name__} ({one_line(exc)})") from None
        takes = set(inspect.signature(model.forward).parameters)
        names = tuple(n for n in tokenizer.model_input_names if n in takes)
        if "input_ids" not in names:
            raise BuildError(f"{name}: the tokenizer gives {list(tokenizer.model_input_names)}; the model needs input_ids")
        if task == "embedding" and "attention_mask" not in names:
            raise BuildError(f"{name}: mean pooling needs the attention mask, which the tokenizer does not give "
                             f"(it gives {list(tokenizer.model_input_names)})")
        try:
            limit = max_tokens(tokenizer, model.config)
        except BuildError as exc:
            raise BuildError(f"{name}: {exc}") from None
        if tokenizer.pad_token_id is None:
            raise BuildError(f"{name}: the tokenizer has no padding token, so a batch of texts cannot be padded "
                             "(set tokenizer.pad_token and save it again)")
        normalize = settings.get("normalize", False)
        if not isinstance(normalize, bool):
            raise BuildError(f"{name}: 'normalize' must be true or false, got {normalize!r}")
        scores_kind = _scores_of(model.config) if task == "classification" else None
        return TextSource(folder, model, tokenizer, task, names, limit, normalize, scores_kind)

    def convert(self, model: TextSource, sidecar: Sidecar, fmt: str, dest: Path) -> Signature | None:
        import torch

        example = tuple(torch.from_numpy(v) for v in self.tokenize(model, _texts(model, 2, np.random.default_rng(0))).values())
        wrapper = served_module(model)
        batch = torch.export.Dim("batch", min=1, max=65536)
        sequence = torch.export.Dim("sequence", min=1, max=model.max_length)
        dynamic = {"tensors": tuple({0: batch, 1: sequence} for _ in model.input_names)}  # forward(*tensors)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                program = torch.export.export(wrapper, example, dynamic_shapes=dynamic, strict=False)
                # One file: the dynamo exporter otherwise writes weights beside it and records that path.
                proto = torch.onnx.export(program, example, dynamo=True, external_data=False,
                                          opset_version=max(sidecar.opset, 18), verbose=False).model_proto
            except Exception as exc:
                raise BuildError(f"torch.onnx.export failed on this {type(model.model).__name__} ({one_line(exc)})") from None
        _free_names(proto, set(wrapper.output_names))
        rename_tensors(proto, list(model.input_names), list(wrapper.output_names))
        save_single_file(proto, dest)
        return None

    def reference(self, model: TextSource, inputs: dict[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
        """transformers' own forward on the token arrays; pooling and scores in numpy, apart from the artifact's graph."""
        import torch

        feed = {n: torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.int64)) for n in model.input_names}
        with torch.no_grad():
            answer = model.model(**feed)
        if model.task == "embedding":
            return by_position(signature, [pool(answer.last_hidden_state.numpy(), inputs["attention_mask"], model.normalize)])
        logits = answer.logits.numpy()
        return by_position(signature, ([scores(logits, model.scores)] if model.scores else []) + [logits])

    def tokenize(self, model: TextSource, texts: list[str]) -> dict[str, np.ndarray]:
        """What transformers' pipelines feed the model: padded to the longest text, cut at the model's length."""
        encoded = model.tokenizer(texts, padding=True, truncation=True, max_length=model.max_length, return_tensors="np")
        return {n: np.asarray(encoded[n], dtype=np.int64) for n in model.input_names}

    def sample_inputs(self, model: TextSource, signature: Signature, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self.tokenize(model, _texts(model, rows, rng))

    def labels(self, model: TextSource) -> tuple[str, ...] | None:
        if not model.scores:
            return None
        id2label = model.model.config.id2label or {}
        return tuple(str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(model.model.config.num_labels))


def _import_transformers(name: str):
    try:
        import transformers
    except ImportError:
        raise BuildError(f"{name}: is a HuggingFace model folder; reading it needs the 'transformers' package ({INSTALL_HINT})") from None
    # The build prints one line per model: no progress bars or advice from transformers' loaders.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def _task_of(config: dict) -> str:
    architectures = config.get("architectures") or []
    return "classification" if any(str(a).endswith("ForSequenceClassification") for a in architectures) else "embedding"


def _weights(folder: Path, name: str, allow_pickle: bool) -> bool:
    """Whether to read safetensors (True) or the pickled weights (False); a refusal when neither may be read."""
    if any((folder / f).is_file() for f in SAFE_WEIGHTS):
        return True
    if any((folder / f).is_file() for f in PICKLED_WEIGHTS):
        if not allow_pickle:
            raise BuildError(f"{name}: its weights are pytorch_model.bin, a pickle, and loading it runs code from the file; "
                             "pass --allow-pickle if you trust it, or save with model.save_pretrained(folder) (safetensors)")
        return False
    raise BuildError(f"{name}: has config.json but no weights (model.safetensors or pytorch_model.bin)")


def _scores_of(config: Any) -> str | None:
    """What pipeline("text-classification") applies to the logits: its function_to_apply default."""
    if config.problem_type == "regression":
        return None
    if config.problem_type == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    return "softmax"


def scores(logits: np.ndarray, kind: str) -> np.ndarray:
    logits = logits.astype(np.float64)
    if kind == "sigmoid":
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


def pool(hidden: np.ndarray, mask: np.ndarray, normalize: bool) -> np.ndarray:
    """Mean of the token vectors the attention mask keeps (sentence-transformers' mean pooling)."""
    weights = mask.astype(np.float64)[:, :, None]
    mean = (hidden.astype(np.float64) * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    if normalize:
        mean = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    return mean.astype(np.float32)


def _texts(model: TextSource, rows: int, rng: np.random.Generator) -> list[str]:
    """Sentences of the tokenizer's own words, of several lengths (an empty one, one past the model's length)."""
    vocab = sorted(w for w, i in model.tokenizer.get_vocab().items()
                   if w.isalpha() and w.isascii() and i not in set(model.tokenizer.all_special_ids))
    words = np.array(vocab or ["text"], dtype=object)
    lengths = [SAMPLE_WORDS[i % len(SAMPLE_WORDS)] for i in range(rows)]
    if rows > 2:
        lengths[2] = model.max_length + 8  # cut by truncation
    return [" ".join(rng.choice(words, n)) for n in lengths]


def _free_names(proto, names: set[str]) -> None:
    """Rename inner tensors that carry an output's name (DistilBERT's ``embedding`` module's
    output is called so), so that the graph's outputs can take it."""
    outputs = {v.name for v in proto.graph.output}
    taken = {n for node in proto.graph.node for n in node.output if n in names and n not in outputs}
    if not taken:
        return
    mapping = {n: f"{n}_inner" for n in taken}
    for value in proto.graph.value_info:
        value.name = mapping.get(value.name, value.name)
    for node in proto.graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]


def served_module(source: TextSource):
    """What the artifact computes, as a torch module: the model on its token arrays in order, then
    the scores or the pooled embedding (torch is imported only when a folder is converted)."""
    import torch

    class Served(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.names, self.task = source.model, source.input_names, source.task
            self.normalize, self.scores = source.normalize, source.scores
            if self.task == "embedding":
                self.output_names = ("embedding",)
            else:
                self.output_names = ("probabilities", "logits") if self.scores else ("logits",)

        def forward(self, *tensors):
            feed = dict(zip(self.names, tensors))
            answer = self.model(**feed)
            if self.task == "embedding":
                mask = feed["attention_mask"].unsqueeze(-1).to(answer.last_hidden_state.dtype)
                mean = (answer.last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                return torch.nn.functional.normalize(mean, p=2.0, dim=1) if self.normalize else mean
            logits = answer.logits
            if self.scores is None:
                return logits
            probabilities = torch.sigmoid(logits) if self.scores == "sigmoid" else torch.softmax(logits, dim=-1)
            return probabilities, logits

    return Served()
