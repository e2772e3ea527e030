"""``text``: one UTF-8 string per row -> the model's token arrays, with the model folder's own tokenizer.

For a HuggingFace folder (see ``converters/adapters/huggingface.py``)::

    preprocess: {step: text}                      # a classifier: add postprocess: {step: classify}
    preprocess: {step: text, normalize: true}     # an embedding model, unit-length vectors
    preprocess: {step: text, task: embedding}     # the encoder of a classifier's folder, as embeddings

``task`` and ``normalize`` are read by the HuggingFace adapter (they shape the model entry);
``max_text_bytes`` bounds one text (longer ones are a 400 naming the row).

The step copies the folder's ``tokenizer.json`` beside its ``model.py`` and runs it with the
``tokenizers`` library: truncation to the model's length, padding to the request's longest row,
the tensors named as the model takes them. Reference for verification: transformers' own
tokenizer of the folder (``padding=True, truncation=True``), as its pipelines call it.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from tritonforge.errors import BuildError
from tritonforge.repository import DYNAMIC

from .base import RAW, Arrays, ModelFacts, Step, StepModel, raw_input

TOKENIZER_FILE = "tokenizer.json"
MAX_TEXT_BYTES = 128 << 10  # far past any model's length (512 tokens is a few KB): larger is a mistake or an attack
FIELDS = {"input_ids": "ids", "token_type_ids": "type_ids", "attention_mask": "attention_mask"}
# RoBERTa-style models number positions from padding_idx + 1: that many positions are not usable.
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer", "bart", "mbart", "xmod", "roberta-prelayernorm")
UNSET_MAX_LENGTH = 1_000_000
NON_ASCII = "naïve café 日本語 привет 😀"


class TextStep(Step):
    name = "text"
    role = "preprocess"
    allowed = {"task": None, "normalize": False, "max_text_bytes": MAX_TEXT_BYTES}

    def configure(self, where: str, raw: dict, facts: ModelFacts, role: str) -> StepModel:
        settings = self.settings(where, raw)
        limit = settings["max_text_bytes"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise BuildError(f"{where}: 'max_text_bytes' must be a whole number of at least 1, got {limit!r}")
        folder = model_folder(where, role, facts)
        if not (folder / "config.json").is_file():
            raise BuildError(f"{where}: the text step needs a HuggingFace model folder (config.json and its tokenizer files)")
        tokenizer, config = _transformers_tokenizer(str(folder))
        tokenizer_file = _tokenizer_file(where, folder, tokenizer)
        outputs = []
        for spec in facts.signature.inputs:
            if spec.name not in FIELDS or len(spec.shape) != 2 or spec.shape[1] != DYNAMIC or spec.dtype.kind not in "iu":
                raise BuildError(f"{where}: the text step gives int64 [batch, sequence] {', '.join(FIELDS)}; the model takes "
                                 f"{facts.signature.describe()}")
            if spec.name not in tokenizer.model_input_names:
                raise BuildError(f"{where}: the model takes '{spec.name}', which its tokenizer does not give "
                                 f"(it gives {', '.join(tokenizer.model_input_names)})")
            outputs.append({"name": spec.name, "field": FIELDS[spec.name]})
        step = {"tokenizer": TOKENIZER_FILE, "max_length": max_tokens(tokenizer, config), "max_text_bytes": limit,
                "outputs": outputs, "pad_id": int(tokenizer.pad_token_id or 0),
                "pad_type_id": int(getattr(tokenizer, "pad_token_type_id", 0) or 0), "pad_token": str(tokenizer.pad_token),
                "padding_side": tokenizer.padding_side, "truncation_side": tokenizer.truncation_side,
                "requirements": ["tokenizers"]}
        step["cut_chars"] = cut_chars(tokenizer_file, step["max_length"], step["truncation_side"])
        return StepModel(self, role, (raw_input(),), facts.signature.inputs, step, files=((TOKENIZER_FILE, tokenizer_file),))

    def run(self, module, inputs: Arrays, step: StepModel) -> Arrays:
        _, path = step.files[0]
        tokenizer = module.load_tokenizer(str(path.parent), {**step.settings, "tokenizer": path.name})
        return module.texts_to_inputs(tokenizer, inputs[RAW].reshape(-1).tolist(), step.settings)

    def reference(self, values: Arrays, step: StepModel) -> Arrays:
        tokenizer, _ = _transformers_tokenizer(str(source_folder(step)))
        texts = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values[RAW].reshape(-1)]
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=step.settings["max_length"], return_tensors="np")
        return {o["name"]: np.asarray(encoded[o["name"]], dtype=np.int64) for o in step.settings["outputs"]}

    def raw_samples(self, step: StepModel, samples: Arrays) -> Arrays:
        """The model's sample rows as text, with an empty text, a non-ASCII one and one past the model's length."""
        tokenizer, _ = _transformers_tokenizer(str(source_folder(step)))
        texts = [tokenizer.decode(row, skip_special_tokens=True) for row in samples["input_ids"]]
        if len(texts) >= 4:
            texts[1], texts[2], texts[3] = "", " ".join([texts[2] or "text"] * 4), f"{NON_ASCII} {texts[3]}"
        if len(texts) >= 5:  # past the step's cut: verified against transformers on the whole text
            texts[4] = " ".join([texts[4] or "text"] * (1 + 2 * step.settings["cut_chars"] // max(len(texts[4]), 1)))
        return {RAW: np.array([t.encode("utf-8") for t in texts], dtype=object).reshape(-1, 1)}


def model_folder(where: str, role: str, facts: ModelFacts) -> Path:
    """The HuggingFace folder the step wraps: the model's own source in the models folder."""
    source = getattr(facts, "source", None)  # a ModelFacts that names its source path says it outright
    if source is not None:
        return Path(source)
    return facts.folder / where.removesuffix(f": {role}")  # make_step's where is "<source name>: <role>"


# tokenizer.json files made for folders that have only a slow tokenizer's files, by made path -> folder
_MADE: dict[Path, Path] = {}


def _tokenizer_file(where: str, folder: Path, tokenizer) -> Path:
    """The folder's tokenizer.json; for a folder with only a slow tokenizer's files (vocab.txt...),
    the one transformers converts it to, written to a scratch folder removed when the build ends."""
    own = folder / TOKENIZER_FILE
    if own.is_file():
        return own
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise BuildError(f"{where}: transformers cannot make a fast tokenizer of this folder's files, and the text step "
                         f"runs {TOKENIZER_FILE} (the tokenizers library): save a fast tokenizer with save_pretrained")
    scratch = Path(tempfile.mkdtemp(prefix="tritonforge-tokenizer-"))
    atexit.register(shutil.rmtree, scratch, True)
    made = scratch / TOKENIZER_FILE
    backend.save(str(made))
    _MADE[made] = folder
    return made


# Pre-tokenizers that split words at whitespace before anything else looks at them: a text cut
# before a whitespace tokenizes into a prefix of the whole text's tokens.
WHITESPACE_SPLITS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit", "Punctuation", "Digits"}
CHARS_PER_TOKEN = 8  # the first window a long text is cut to, per token the model reads


def cut_chars(tokenizer_file: Path, max_length: int, truncation_side: str) -> int:
    """How long a text may be before the step cuts it ahead of tokenizing (see the template's
    ``shortened``), or 0 when cutting could change the kept tokens: left truncation, or a
    pre-tokenizer not known to split at whitespace first."""
    import json

    spec = json.loads(tokenizer_file.read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    members = spec.get("pretokenizers", [spec]) if spec.get("type") == "Sequence" else [spec]
    safe = all(m.get("type") in WHITESPACE_SPLITS
               or (m.get("type") == "ByteLevel" and m.get("use_regex", True))
               or (m.get("type") == "Metaspace" and m.get("split", True)) for m in members)
    return max(1024, CHARS_PER_TOKEN * max_length) if safe and members and truncation_side == "right" else 0


def source_folder(step: StepModel) -> Path:
    """The HuggingFace folder whose tokenizer the step runs (for transformers' reference)."""
    _, path = step.files[0]
    return _MADE.get(path, path.parent)


@lru_cache(maxsize=8)
def _transformers_tokenizer(folder: str):
    try:
        from transformers import AutoConfig, AutoTokenizer
    except ImportError:
        raise BuildError("the text step is verified against transformers' tokenizer: install it (pip install 'tritonforge[text]')") from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return (AutoTokenizer.from_pretrained(folder, local_files_only=True),
                AutoConfig.from_pretrained(folder, local_files_only=True))
    except Exception as exc:
        raise BuildError(f"{Path(folder).name}: transformers cannot load its tokenizer ({type(exc).__name__})") from None


def max_tokens(tokenizer, config) -> int:
    """Tokens a text is cut to: the tokenizer's ``model_max_length``, never more than the model has
    positions for (the HuggingFace adapter exports the model with the same rule)."""
    positions = getattr(config, "max_position_embeddings", None) or UNSET_MAX_LENGTH
    if getattr(config, "model_type", "") in OFFSET_POSITIONS:
        positions -= (getattr(config, "pad_token_id", None) or 0) + 1
    declared = int(getattr(tokenizer, "model_max_length", 0) or 0)
    limit = min(declared, positions) if 0 < declared < UNSET_MAX_LENGTH else positions
    if limit >= UNSET_MAX_LENGTH:
        raise BuildError("neither the tokenizer (model_max_length) nor config.json (max_position_embeddings) says how long a text may be")
    return int(limit)
