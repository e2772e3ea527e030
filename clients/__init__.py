"""Clients for a served tritonforge repository: requests built from the server's model metadata.

- :class:`TritonClient` / :class:`AsyncTritonClient`: HTTP or gRPC, sync or asyncio;
  ``infer(model, {input: array}, top_k=k)`` returns an :class:`InferResult`.
- :func:`read_inputs`: .npy/.npz, JSON, CSV rows or image files -> arrays for the model's inputs.
- :func:`format_text` / :func:`format_json`: print answers (labels with scores for classifiers).
- ``triton-infer`` (``tritonforge.clients.cli``): the command over all of it.
"""
from tritonforge.clients.client import AsyncTritonClient, Class, InferResult, ServerError, TritonClient
from tritonforge.clients.inputs import InputError, read_inputs
from tritonforge.clients.output import format_json, format_text
from tritonforge.clients.spec import ModelSpec, TensorSpec

__all__ = [
    "AsyncTritonClient", "Class", "InferResult", "InputError", "ModelSpec", "ServerError",
    "TensorSpec", "TritonClient", "format_json", "format_text", "read_inputs",
]
