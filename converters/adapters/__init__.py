"""One adapter per framework, each registering itself with :mod:`tritonforge.converters.registry`.

Order matters only for detection: the ONNX and Keras checks are cheap and certain; pickle-based
files are tried last, after every adapter that recognises a file by its bytes.
"""
from . import onnx_file, keras, torch, xgboost, sklearn  # noqa: F401
