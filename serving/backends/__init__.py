"""CPU backends written in Python, one folder per Triton backend name.

Triton routes ``platform: onnxruntime_onnx`` to backend ``onnxruntime``,
``pytorch_libtorch`` to ``pytorch`` and ``tensorflow_savedmodel`` to ``tensorflow``; FIL models
name ``backend: "fil"`` themselves. A folder
``<backends dir>/<name>/model.py`` makes that name a Python-based backend. serve-repo links
these folders into the backends directory it gives tritonserver.
"""
from pathlib import Path

BACKENDS_DIR = Path(__file__).resolve().parent
BACKEND_NAMES = ("onnxruntime", "pytorch", "tensorflow", "fil")
