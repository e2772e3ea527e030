"""tune-repo: measure candidate serving configs of each model on a real server and keep the best.

:func:`tune_model` searches ``max_batch_size``, preferred batch sizes, the queue delay, the
instance count and (ONNX) ONNX Runtime's thread counts: a coarse sweep, then the neighbours of the
best, each loaded through Triton's model-control API with a config override (files are never
edited to try a candidate) and measured with ``wrk`` at every concurrency the :class:`Objective`
lists, plus one connection. The objective ranks them (the highest throughput whose p99 stays
within the budget at every listed concurrency, or the lowest p99 at one load); a candidate slower
than the current config at one connection, beyond the margin, is never taken. The whole search,
its final check included, stays within the budget. The winner is written as
``configs/<target>.pbtxt`` when it beats the current config by the margin on repeated
measurement, and recorded in the manifest with its curve. :func:`search` is the choice logic
alone, over any measurer.
"""
from .errors import TuneError
from .measure import TritonControl, WrkMeasurer
from .objective import Measured, Objective
from .candidates import Candidate
from .tune import Search, TuneResult, search, tune_model

__all__ = ["Candidate", "Measured", "Objective", "Search", "TritonControl", "TuneError", "TuneResult", "WrkMeasurer",
           "search", "tune_model"]
