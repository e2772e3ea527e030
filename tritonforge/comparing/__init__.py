"""compare-models: the same rows to several served models, their quality, agreement and cost side by side.

- :mod:`.rows`: a data file (CSV, JSON rows or lines, .npz, images) read once, its target set apart,
  and each model's request tensors built from it by the clients' own reader.
- :mod:`.answers`: one model's answers read from what the server says it is (labels and class
  scores, or predictions); :class:`Entry` is ``name`` or ``name:version``.
- :mod:`.metrics`: accuracy / log-loss / AUC or MAE / RMSE against the target, and agreement.
- :mod:`.cost`: throughput and p50/p99 at one concurrency with the native generators (wrk over HTTP,
  h2load over gRPC).
- :mod:`.compare`: :func:`compare_models`, the baseline and candidates judged against thresholds.
- :mod:`.report`: terminal tables, JSON, HTML with plots; :mod:`.cli`: the console script.
"""
from .answers import Answers, CompareError, Entry
from .compare import CompareOptions, Comparison, Thresholds, compare_models
from .rows import DataError, DataSet, read_data

__all__ = ["Answers", "CompareError", "CompareOptions", "Comparison", "DataError", "DataSet", "Entry", "Thresholds",
           "compare_models", "read_data"]
