"""tune-repo: measure candidate serving configs of each model on a real server and keep the best.

:func:`tune_model` searches ``max_batch_size``, preferred batch sizes, the queue delay, the
instance count and (ONNX) ONNX Runtime's thread counts: a coarse sweep, then the neighbours of the
best, each loaded through Triton's model-control API with a config override (files are never
edited to try a candidate) and measured with ``wrk`` at increasing concurrency until throughput
stops growing or p99 passes the budget. The winner is written as ``configs/<target>.pbtxt`` when it
beats the current config by the margin, and recorded in the manifest with its figures.
"""
from .tune import Candidate, Measured, TritonControl, TuneError, TuneResult, tune_model

__all__ = ["Candidate", "Measured", "TritonControl", "TuneError", "TuneResult", "tune_model"]
