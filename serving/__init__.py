"""Serving a tritonforge model repository on a real Triton, with no Docker and no GPU.

- ``tritonforge.serving.server``: :func:`serve` / :class:`Server`, the bundled ``tritonserver`` (from the
  nvidia-pytriton wheel) on a repository: free or chosen ports on 127.0.0.1, control modes
  ``none``/``poll``/``explicit``, KIND_GPU served as KIND_CPU through the load API, reload of a
  model whose backend process died, clean stop (processes and /dev/shm regions). ``Server``
  composes one module per job: ``process`` (tritonserver's files, command line, environment,
  start and stop), ``loading`` (the load API, which config a host serves), ``monitor`` (dead
  stubs reloaded in place, their /dev/shm regions) and ``polling`` (following the repository).
- ``tritonforge.serving.backends``: CPU backends written in Python for the platforms build-repo writes
  (``onnxruntime``, ``pytorch``, ``tensorflow``), each refusing a config that does not fit its
  artifact and serving a dynamic batch in one framework call.
- ``tritonforge.serving.check``: :func:`check_repository`, the served answers against the stored samples.
- ``tritonforge.serving.cli``: the ``serve-repo`` and ``check-repo`` console scripts.
"""
from tritonforge.serving.errors import ServeError
from tritonforge.serving.server import Server, serve

__all__ = ["Server", "ServeError", "serve"]
