"""``text``: the text ensemble (tokenizer step -> model) as one ONNX graph, the tokenizer made of
onnxruntime-extensions' ops in front of the model.

The graph takes what the Python-step ensemble takes (``RAW``: one UTF-8 string a row) and answers
its outputs. The folder's ``tokenizer.json`` decides the ops:

- **WordPiece** (BERT, DistilBERT: ``BertNormalizer`` + ``BertPreTokenizer``): per text (a
  ``Loop``), ``BasicTokenizer`` (clean, lower-case, strip accents, split CJK and punctuation) ->
  ``WordpieceTokenizer`` (one row of pieces a word) -> ids by ``LabelEncoder``. The op keeps the
  pieces found before a piece it cannot match (``xylo`` ``##p`` ``[UNK]``) where the tokenizers
  library answers the whole word as ``[UNK]``: the graph drops those pieces of every word that ends
  in ``[UNK]``. (``BertTokenizer``, the one-op form, cannot be mended so: it loses the word rows.)
- **byte-level BPE** (RoBERTa, GPT-2: ``ByteLevel`` pre-tokenizer without a prefix space):
  ``RobertaTokenizer`` (a vocabulary with ``<s> </s> <pad> <unk>``; the ``<s>``/``</s>`` it adds
  are sliced off) or ``GPT2Tokenizer`` (one with ``<|endoftext|>``) on the whole batch, the
  folder's added tokens passed as ``added_token``. Each op reads its own special tokens in any
  text: a vocabulary with neither set is not fused.

Then standard ONNX ops do what the step's settings say, as the tokenizers library does it:
truncation of the text's tokens to ``max_length`` less the special tokens (right or left), the
post-processor's special tokens (``TemplateProcessing``, ``BertProcessing``,
``RobertaProcessing``), ``token_type_ids`` from the template, padding to the longest row with
``pad_id``/``pad_type_id`` on ``padding_side``. A batch is padded to its longest row: requests
Triton batches together are padded alike, which the attention mask makes invisible to the model
(the fused answers equal the ensemble's within the model's tolerance).

The fuser fuses only where the graph's tokens equal the Python step's, exactly, on the
verification texts (the ensemble's sample texts and :data:`CHECK_TEXTS`: repeated words, words
the vocabulary lacks, empty, past the model's length, non-ASCII, control characters, one batch of
them all); otherwise it returns the first text that differs, and the Python step stays.

What the fused entry does not do as the step does (docs/FUSED.md, "Text"): it answers texts over
``max_text_bytes`` instead of refusing them with a 400 and tokenizes a long text whole (no
``cut_chars``); the ops read a text only up to a NUL character; on Triton's C++ backend text that
is not UTF-8 is tokenized as the ops read it (serve-repo refuses it with a 400).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..library.base import RAW, load_template
from .base import MAX_IR_VERSION, Fused, Fuser, Pipeline

LIBRARY = "ortextensions"  # tritonforge.repository.op_libraries' name for onnxruntime-extensions
DOMAIN = "ai.onnx.contrib"  # the domain onnxruntime-extensions registers its ops in
ML_DOMAIN = "ai.onnx.ml"
MIN_OPSET = 18  # Reduce* take axes as an input (the HuggingFace adapter exports at 18 or more)
TOKENIZER_FILE = "tokenizer.json"
PREFIX = "tok_"  # the tokenizer graph's own names, apart from the model's

# Texts every fused tokenizer is held to, beside the ensemble's own sample texts (which are the
# folder's words): repeated words, words the vocabulary lacks (pieces of them found, then none),
# case and accents, punctuation, whitespace runs, CJK, emoji, control characters, empty.
CHECK_TEXTS = (
    "", " ", "\n\t ", "x",
    "the the the THE The tHe",
    "zebra qwerty xylophone unknownword jjjjjjjjjj",
    "Hello, World! It's 3:45pm... (really?) {braces} [brackets] #hash @at",
    "tab\there\nnewline\r\nreturn  double  space   triple",
    "  leading and trailing  ",
    "Ünïcödé ÀÉÎ straße ǅ İstanbul ﬁne",
    "naïve café 日本語 テキスト привет 中文字符 한국어 😀😀 🎉!",
    "\u00a0no\u2009break\u200bzero\u3000width",
    "control\x01\x02chars\x7f and \ufffd replacement",
    "don't won't I'm we've y'all",
    "<|endoftext|> <s> </s> [CLS] [SEP] <unk> [UNK] written out",
    "123 4567 89.5 1,000,000 3.14159",
    "a" * 150 + " " + "b" * 99,
    # beyond Latin-1, where normalizers differ most: case and accents of Latin Extended, a title-case
    # digraph, a combining mark, a format character, punctuation and spaces of other scripts
    "Ādam Łódź Čech ǅemal Ⅻ x\u0303y \u0600ab cd\u058aef gh\u2e02ij kl\u1680mn",
)


class TextFuser(Fuser):
    kind = "text"

    def fuse(self, pipeline: Pipeline) -> Fused | str:
        step = pipeline.step("text")
        files = dict(step.entry.files) if step else {}
        if step is None or TOKENIZER_FILE not in files:
            return f"the ensemble has no text step with its {TOKENIZER_FILE}; the Python step stays"
        model = onnx.load(str(pipeline.artifact))
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset < MIN_OPSET:
            return f"the model's ONNX is opset {opset}: the tokenizer graph needs {MIN_OPSET} or more; the Python step stays"
        spec = json.loads(Path(files[TOKENIZER_FILE]).read_text(encoding="utf-8"))
        graph = tokenizer_graph(spec, step.settings, opset)
        if isinstance(graph, str):
            return f"{graph}; the Python step stays"
        texts = sample_texts(pipeline.ensemble.samples[0][RAW]) + check_texts(spec, step.settings)
        differs = first_difference(graph, Path(files[TOKENIZER_FILE]), step.settings, texts)
        if differs:
            return f"the tokenizer ops answer other tokens than the folder's {TOKENIZER_FILE} {differs}; the Python step stays"
        outputs = [o.name for o in pipeline.ensemble.config.output]
        fused = merge(graph, model, [o["name"] for o in step.settings["outputs"]], outputs)
        raw, answers = pipeline.ensemble.samples
        # ONNX Runtime's Python API reads a string tensor from str (bytes would be taken as their
        # repr); serve-repo's backend decodes Triton's BYTES to str the same way.
        request = {RAW: np.array(sample_texts(raw[RAW]), dtype=object).reshape(raw[RAW].shape)}
        return Fused(fused, requests=(request,), expected=({n: answers[n] for n in outputs},), libraries=(LIBRARY,))


def sample_texts(raw: np.ndarray) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in raw.reshape(-1)]


def check_texts(spec: dict, settings: dict) -> list[str]:
    """:data:`CHECK_TEXTS`, a text past the model's length, and one with the folder's own special
    and added tokens written out (the tokenizers library reads them as those tokens)."""
    added = " ".join(f"a{t['content']}b" for t in spec.get("added_tokens", []))
    return list(CHECK_TEXTS) + [long_text(spec, settings), f"{added} end"]


def long_text(spec: dict, settings: dict) -> str:
    """A text of the vocabulary's own words, four times past the model's length."""
    words = [w for w in spec.get("model", {}).get("vocab", {}) if w.isalpha()][:50] or ["text"]
    return " ".join((words * (1 + 4 * settings["max_length"] // len(words)))[: 4 * settings["max_length"]])


# ---------------------------------------------------------------------------------------------
# Checking the graph against the Python step


def session_options():
    """ONNX Runtime options with onnxruntime-extensions' ops registered."""
    import onnxruntime as ort

    from tritonforge.repository import op_libraries

    options = ort.SessionOptions()
    options.register_custom_ops_library(str(op_libraries.library(LIBRARY).locate()))
    return options


def first_difference(graph: onnx.ModelProto, tokenizer_file: Path, settings: dict, texts: list[str]) -> str:
    """'' when the graph's tokens equal the Python step's on each text alone and on all of them in
    one batch; else which text differs and how."""
    import onnxruntime as ort

    module = load_template("text")
    tokenizer = module.load_tokenizer(str(tokenizer_file.parent), {**settings, "tokenizer": tokenizer_file.name})
    session = ort.InferenceSession(graph.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    names = [o["name"] for o in settings["outputs"]]
    for batch in [[t] for t in texts] + [texts]:
        expected = module.encode(tokenizer, batch, {**settings, "cut_chars": 0})
        where = f"text {batch[0]!r:.50}" if len(batch) == 1 else f"a batch of {len(batch)} texts"
        try:
            answer = dict(zip(names, session.run([PREFIX + n for n in names], {RAW: np.array(batch, dtype=object).reshape(-1, 1)})))
        except Exception as exc:  # ONNX Runtime's message is several lines: its first says what failed
            return f"on {where}: the graph fails ({str(exc).strip().splitlines()[0][:160]})"
        for name in names:
            if answer[name].shape != expected[name].shape or not np.array_equal(answer[name], expected[name]):
                return f"on {where}: {name} {describe(answer[name], expected[name])}"
    return ""


def describe(answer: np.ndarray, expected: np.ndarray) -> str:
    if answer.shape != expected.shape:
        return f"of shape {list(answer.shape)} against the step's {list(expected.shape)}"
    row, column = (int(i[0]) for i in np.nonzero(answer != expected))
    return (f"row {row} differs from position {column}: {answer[row, column:column + 4].tolist()} against the step's "
            f"{expected[row, column:column + 4].tolist()}")


def merge(graph: onnx.ModelProto, model: onnx.ModelProto, token_names: list[str], outputs: list[str]) -> onnx.ModelProto:
    """The tokenizer graph in front of the model: RAW in, the ensemble's outputs out."""
    from onnx import compose

    io_map = [(PREFIX + n, n) for n in token_names]
    graph.ir_version = model.ir_version  # merge_models asks for one IR version
    fused = compose.merge_models(graph, model, io_map=io_map, outputs=outputs,
                                 producer_name="tritonforge", doc_string="tokenizer (onnxruntime-extensions) + model")
    opsets = {}
    for opset in fused.opset_import:  # merge_models lists the default domain twice when spelt both ways
        domain = "" if opset.domain == "ai.onnx" else opset.domain
        opsets[domain] = max(opsets.get(domain, 0), opset.version)
    del fused.opset_import[:]
    fused.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets.items())
    return fused


# ---------------------------------------------------------------------------------------------
# The tokenizer graph


class Nodes:
    """A graph under construction: nodes, constants, fresh names."""

    def __init__(self, prefix: str = PREFIX):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.prefix = prefix
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}{hint}_{self.count}"

    def const(self, value, dtype=np.int64, hint: str = "c") -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, domain: str = "", **attrs) -> Any:
        names = [self.name(op_type.lower()) for _ in range(outputs)] if isinstance(outputs, int) else outputs
        self.nodes.append(helper.make_node(op_type, inputs, names, name=self.name(op_type), domain=domain, **attrs))
        return names[0] if len(names) == 1 else names


def tokenizer_graph(spec: dict, settings: dict, opset: int) -> onnx.ModelProto | str:
    """RAW [batch, 1] strings -> the step's outputs (``tok_input_ids``...), or why not."""
    specials = special_tokens(spec)
    if isinstance(specials, str):
        return specials
    kind = (spec.get("model") or {}).get("type")
    g = Nodes()
    texts = g.op("Reshape", [RAW, g.const([-1])])
    budget = settings["max_length"] - len(specials["prefix"]) - len(specials["suffix"])
    if budget < 1:
        return f"max_length {settings['max_length']} leaves no room for the text between its special tokens"
    if kind == "WordPiece":
        content = wordpiece(g, spec, texts, budget, settings["truncation_side"], opset)
    elif kind == "BPE":
        content = byte_level_bpe(g, spec, texts)
    else:
        return f"no tokenizer op reproduces a '{kind}' model (WordPiece and byte-level BPE are fused)"
    if isinstance(content, str):
        return content
    finish(g, *content, budget, specials, settings)
    inputs = [helper.make_tensor_value_info(RAW, TensorProto.STRING, ["batch", 1])]
    outputs = [helper.make_tensor_value_info(PREFIX + o["name"], TensorProto.INT64, ["batch", "sequence"])
               for o in settings["outputs"]]
    graph = helper.make_graph(g.nodes, "tokenizer", inputs, outputs, g.initializers)
    return helper.make_model(graph, ir_version=MAX_IR_VERSION, opset_imports=[
        helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, 1), helper.make_opsetid(ML_DOMAIN, 2)])


def special_tokens(spec: dict) -> dict | str:
    """The ids and type ids the post-processor puts before and after a single text."""
    post = spec.get("post_processor") or {"type": None}
    kind = post.get("type")
    if kind in ("BertProcessing", "RobertaProcessing"):
        return {"prefix": [post["cls"][1]], "suffix": [post["sep"][1]], "prefix_types": [0], "suffix_types": [0], "type": 0}
    if kind in (None, "ByteLevel"):  # ByteLevel's post-processor only trims offsets
        return {"prefix": [], "suffix": [], "prefix_types": [], "suffix_types": [], "type": 0}
    if kind != "TemplateProcessing":
        return f"the post-processor '{kind}' is not one the graph reproduces (TemplateProcessing, BertProcessing, RobertaProcessing)"
    found = {"prefix": [], "suffix": [], "prefix_types": [], "suffix_types": [], "type": 0}
    side = "prefix"
    for item in post["single"]:
        if "Sequence" in item:
            side, found["type"] = "suffix", item["Sequence"]["type_id"]
            continue
        token = item["SpecialToken"]
        ids = post["special_tokens"][token["id"]]["ids"]
        found[side] += ids
        found[f"{side}_types"] += [token["type_id"]] * len(ids)
    return found


def wordpiece(g: Nodes, spec: dict, texts: str, budget: int, truncation: str, opset: int):
    """Each text's WordPiece ids (truncated to ``budget``), [batch, budget] right-padded, and their counts."""
    normalizer, pre, model = spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}, spec["model"]
    if normalizer.get("type") != "BertNormalizer" or pre.get("type") != "BertPreTokenizer":
        return (f"a WordPiece tokenizer is fused with BertNormalizer and BertPreTokenizer, not "
                f"{normalizer.get('type')} and {pre.get('type')}")
    strip = normalizer.get("strip_accents")
    vocab = model["vocab"]
    unk = vocab.get(model["unk_token"])
    if unk is None:
        return f"the unknown token {model['unk_token']!r} is not in the vocabulary"
    body = Nodes(prefix="tokloop_")
    i = "tokloop_i"
    text = body.op("Gather", [texts, i], axis=0)
    words = body.op("BasicTokenizer", [text], domain=DOMAIN, do_lower_case=int(normalizer.get("lowercase", True)),
                    strip_accents=int(normalizer.get("lowercase", True) if strip is None else strip),
                    tokenize_chinese_chars=int(normalizer.get("handle_chinese_chars", True)), tokenize_punctuation=1,
                    remove_control_chars=int(normalizer.get("clean_text", True)))
    pieces, _, begins, ends = body.op("WordpieceTokenizer", [words, body.const(np.zeros(0, np.int64))], 4, domain=DOMAIN,
                                      vocab=json.dumps(vocab, ensure_ascii=False), suffix_indicator=model["continuing_subword_prefix"],
                                      unknown_token=model["unk_token"], max_input_chars_per_word=int(model["max_input_chars_per_word"]))
    tokens = list(vocab)
    ids = body.op("LabelEncoder", [pieces], domain=ML_DOMAIN, keys_strings=tokens,
                  values_int64s=[vocab[t] for t in tokens], default_int64=int(unk))
    ids = whole_unknown_words(body, ids, begins, ends, unk)
    length = body.op("Size", [ids])
    start, end = (body.const([0]), body.const([budget])) if truncation == "right" else (body.const([-budget]), body.const([2**62]))
    ids = body.op("Slice", [ids, start, end])
    length = body.op("Min", [length, body.const(budget)])
    pad = body.op("Concat", [body.const([0]), body.op("Unsqueeze", [body.op("Sub", [body.const(budget), length]), body.const([0])])], axis=0)
    row = body.op("Pad", [ids, pad, body.const(0)], outputs=["tokloop_row"])
    body.op("Identity", [length], outputs=["tokloop_length"])
    body.op("Identity", ["tokloop_cond"], outputs=["tokloop_cond_out"])
    loop_graph = helper.make_graph(
        body.nodes, "tokenize_one",
        [helper.make_tensor_value_info(i, TensorProto.INT64, []), helper.make_tensor_value_info("tokloop_cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("tokloop_cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info(row, TensorProto.INT64, [budget]),
         helper.make_tensor_value_info("tokloop_length", TensorProto.INT64, [])],
        body.initializers)
    count = g.op("Squeeze", [g.op("Shape", [texts])])
    rows, lengths = g.op("Loop", [count, ""], 2, body=loop_graph)
    return rows, lengths


def whole_unknown_words(g: Nodes, ids: str, begins: str, ends: str, unk: int) -> str:
    """The ids without the pieces of words that end in the unknown token, as the tokenizers
    library answers such a word: ``[UNK]`` alone. The op ends every word it cannot finish with
    ``[UNK]``, and answers ``[UNK]`` only at a word's end."""
    is_unk = g.op("Equal", [ids, g.const(unk)])
    last = g.op("Sub", [ends, g.const(1)])
    word_unknown = g.op("Gather", [is_unk, last], axis=0)
    # the word of each piece: 1 at each word's first piece but the first word's, summed along
    count = g.op("Size", [ids])
    starts = g.op("ScatterElements", [g.op("ConstantOfShape", [g.op("Reshape", [count, g.const([1])])],
                                             value=numpy_helper.from_array(np.zeros(1, np.int64))),
                                      g.op("Slice", [begins, g.const([1]), g.const([2**62])]),
                                      g.op("Slice", [g.op("Expand", [g.const([1]), g.op("Shape", [begins])]), g.const([1]), g.const([2**62])])],
                  axis=0)
    word = g.op("CumSum", [starts, g.const(0)])
    keep = g.op("Or", [g.op("Not", [g.op("Gather", [word_unknown, word], axis=0)]), is_unk])
    return g.op("Compress", [ids, keep], axis=0)


def byte_level_bpe(g: Nodes, spec: dict, texts: str):
    """Each text's byte-level BPE ids, [batch, longest] right-padded, and their counts."""
    pre, model, normalizer = spec.get("pre_tokenizer") or {}, spec["model"], spec.get("normalizer")
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True) or pre.get("add_prefix_space"):
        return f"a BPE tokenizer is fused with a ByteLevel pre-tokenizer (its regex, no prefix space), not {json.dumps(pre)[:80]}"
    if normalizer or model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix") \
            or model.get("byte_fallback"):
        return "a byte-level BPE with a normalizer, dropout, subword affixes or byte fallback is not what the BPE ops do"
    # Each op knows special tokens of its own, read in any text: GPT2Tokenizer "<|endoftext|>",
    # RobertaTokenizer "<s>", "</s>", "<pad>", "<unk>" (and adds <s> ... </s>). One whose special
    # tokens the vocabulary lacks answers ids past it (the model then fails on such a text).
    known = set(model["vocab"]) | {t["content"] for t in spec.get("added_tokens", [])}
    op = next((name for name, tokens in BPE_OPS.items() if tokens <= known), None)
    if op is None:
        return ("the vocabulary has neither GPT2Tokenizer's special token <|endoftext|> nor RobertaTokenizer's "
                "<s> </s> <pad> <unk>, which the ops read in any text")
    merges = "\n".join(" ".join(m) if isinstance(m, list) else m for m in model["merges"])
    added = "\n".join(f"{t['content']}={t['id']}" for t in spec.get("added_tokens", []))
    ids, mask = g.op(op, [texts], 2, domain=DOMAIN, vocab=json.dumps(model["vocab"], ensure_ascii=False),
                     merges=merges, padding_length=-1, added_token=added)
    counts = g.op("ReduceSum", [mask, g.const([1])], keepdims=0)
    if op == "RobertaTokenizer":  # the text's own tokens are between the <s> and </s> it added
        ids = g.op("Slice", [ids, g.const([1]), g.const([2**62]), g.const([1])])
        counts = g.op("Sub", [counts, g.const(2)])
    return ids, counts


BPE_OPS = {"GPT2Tokenizer": {"<|endoftext|>"}, "RobertaTokenizer": {"<s>", "</s>", "<pad>", "<unk>"}}


def finish(g: Nodes, content: str, lengths: str, budget: int, specials: dict, settings: dict) -> None:
    """Right-padded text ids [batch, n] and their counts -> the model's inputs: truncated to
    ``budget`` (keeping the end for left truncation), special tokens around, padded to the
    longest row on the padding side."""
    prefix, suffix = specials["prefix"], specials["suffix"]
    width = g.op("Shape", [content], start=1, end=2)
    # left truncation keeps a row's last tokens: shift it left by what it has over the budget
    over = g.op("Max", [g.op("Sub", [lengths, g.const(budget)]), g.const(0)])
    kept = g.op("Min", [lengths, g.const(budget)])
    longest = g.op("ReduceMax", [kept, g.const([0])], keepdims=1)  # [1]
    total = g.op("Add", [longest, g.const([len(prefix) + len(suffix)])])
    # position p of a row: prefix[p], then content[p - len(prefix) (+ shift)], then suffix, then padding
    p = g.op("Unsqueeze", [g.op("Range", [g.const(0), g.op("Squeeze", [total]), g.const(1)]), g.const([0])])  # [1, T]
    kept2 = g.op("Unsqueeze", [kept, g.const([1])])  # [B, 1]
    at = g.op("Sub", [p, g.const(len(prefix))])
    in_text = g.op("And", [g.op("GreaterOrEqual", [at, g.const(0)]), g.op("Less", [at, kept2])])
    source = at if settings["truncation_side"] == "right" else g.op("Add", [at, g.op("Unsqueeze", [over, g.const([1])])])
    last = g.op("Sub", [width, g.const([1])])
    safe = g.op("Max", [g.op("Min", [source, last]), g.const(0)])
    safe = g.op("Expand", [safe, g.op("Shape", [in_text])])
    # a batch of only empty texts has no columns to gather from: give it one
    padded = g.op("Pad", [content, g.op("Concat", [g.const([0, 0, 0]), g.op("Sub", [g.const([1]), g.op("Min", [width, g.const([1])])])], axis=0),
                          g.const(0)])
    text_ids = g.op("GatherElements", [padded, safe], axis=1)
    after = g.op("Sub", [at, kept2])  # index into the suffix
    in_suffix = g.op("And", [g.op("GreaterOrEqual", [after, g.const(0)]), g.op("Less", [after, g.const(len(suffix))])])
    in_prefix = g.op("Less", [p, g.const(len(prefix))])
    real = g.op("Or", [g.op("Or", [in_prefix, in_text]), in_suffix])

    def pick(before: list[int], middle, behind: list[int], pad: int) -> str:
        head = g.op("Gather", [g.const(before + [pad]), g.op("Min", [p, g.const(len(before))])], axis=0)
        tail = g.op("Gather", [g.const(behind + [pad]), g.op("Min", [g.op("Max", [after, g.const(0)]), g.const(len(behind))])], axis=0)
        value = g.op("Where", [in_prefix, head, g.op("Where", [in_text, middle, g.op("Where", [in_suffix, tail, g.const(pad)])])])
        return value

    columns = {"ids": pick(prefix, text_ids, suffix, settings["pad_id"]),
               "type_ids": pick(specials["prefix_types"], g.const(specials["type"]), specials["suffix_types"], settings["pad_type_id"]),
               "attention_mask": g.op("Cast", [real], to=TensorProto.INT64)}
    if settings["padding_side"] == "left":  # roll each row right by its padding: the padding first
        rows = g.op("ReduceSum", [columns["attention_mask"], g.const([1])], keepdims=1)
        index = g.op("Mod", [g.op("Add", [p, rows]), g.op("Max", [total, g.const([1])])])  # no columns: no division by 0
        index = g.op("Expand", [index, g.op("Shape", [in_text])])
        columns = {k: g.op("GatherElements", [v, index], axis=1) for k, v in columns.items()}
    for output in settings["outputs"]:
        g.op("Expand", [columns[output["field"]], g.op("Shape", [in_text])], outputs=[PREFIX + output["name"]])
