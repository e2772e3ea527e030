"""Triton's real C++ ONNX Runtime backend, for tests that want an ONNX entry loaded the way the NGC
image loads it, not only by serve-repo's Python stand-in.

``../shared/reference-backends/onnxruntime`` (beside this checkout; see its README.md) holds the
r24.10 ``libtriton_onnxruntime.so`` and the ONNX Runtime library it links against, the release of
the tritonserver bundled in nvidia-pytriton. A user's machine does not have it, so only tests use
it, and every test that asks for :func:`reference_server` is skipped cleanly where it is absent.
The project's code never refers to it.

One server per session, on 127.0.0.1, explicit model control, an empty repository of its own;
its ``onnxruntime`` backend is the C++ one, the Python backend beside it (so ensembles with Python
steps around an ONNX model load too). Use it like ``tiny_server``::

    def test_mine(reference_server):
        name = load_copy(reference_server, reference_server.repo, built_repo / "my_model", "ref_my_model")
        client = reference_server.http_client()     # or .grpc_client(); answers as Triton's C++ backend
        ...

``load_copy`` (fixtures_serving) copies a built entry in under a new name and loads it; a refusal
raises ServeError with Triton's message. Give every test its own served name: the session shares
one server. Only ONNX entries whose instance kind fits the host load (KIND_GPU is served as
KIND_CPU on a host without GPU, as serve-repo does).
"""
from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

REFERENCE_BACKENDS = Path(__file__).resolve().parents[2] / "shared" / "reference-backends"
REFERENCE_ONNXRUNTIME = REFERENCE_BACKENDS / "onnxruntime"
BACKEND_LIBRARY = "libtriton_onnxruntime.so"


def reference_onnxruntime() -> Path | None:
    """The C++ ONNX Runtime backend's folder, or None where this machine has none."""
    return REFERENCE_ONNXRUNTIME if (REFERENCE_ONNXRUNTIME / BACKEND_LIBRARY).is_file() else None


def _reference_server_class():
    from tritonforge.serving.server import Server

    @dataclass
    class ReferenceServer(Server):
        """serve-repo's Server with the C++ ONNX Runtime backend in place of the Python one."""

        def command(self) -> list[str]:
            # start() has just copied the project's backends into workdir/backends: swap in the C++
            # one (a copy: Triton refuses a backend whose real path is outside the backends folder).
            backend = self.workdir / "backends" / "onnxruntime"
            if not (backend / BACKEND_LIBRARY).is_file():
                shutil.rmtree(backend, ignore_errors=True)
                shutil.copytree(REFERENCE_ONNXRUNTIME, backend)
                for path in backend.iterdir():  # the shared copy is read-only; stop() must remove ours
                    path.chmod(0o644)
                backend.chmod(0o755)
            return super().command()

    return ReferenceServer


@contextlib.contextmanager
def _op_libraries_on_path(folder: Path):
    """The custom-op libraries configs name (``libortextensions.so``) in ``folder``, made loadable
    outside Python, on LD_LIBRARY_PATH while the server starts (it copies the environment then), as
    deploy/triton puts them on the NGC image's; where one cannot be made, entries naming it are refused."""
    from tritonforge.repository import op_libraries

    for name in op_libraries.LIBRARIES:
        try:
            op_libraries.standalone_copy(name, folder)
        except op_libraries.OpLibraryError:
            pass
    before = os.environ.get("LD_LIBRARY_PATH")
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([str(folder)] + ([before] if before else []))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = before


@pytest.fixture(scope="session")
def reference_server(tmp_path_factory):
    """A tritonserver whose ``onnxruntime`` backend is Triton's C++ one (r24.10, ORT 1.19.2), on an
    empty repository (``reference_server.repo``), explicit model control; skipped where
    ../shared/reference-backends has no such backend."""
    if reference_onnxruntime() is None:
        pytest.skip(f"no C++ ONNX Runtime backend at {REFERENCE_ONNXRUNTIME} (only some machines have one)")
    repo = tmp_path_factory.mktemp("reference_repo")
    server = _reference_server_class()(repo, control_mode="explicit", load_models=(), config_name="cpu",
                                       recovery=False)
    with _op_libraries_on_path(tmp_path_factory.mktemp("op_libraries")):
        server.start()
    try:
        assert (server.workdir / "backends" / "onnxruntime" / BACKEND_LIBRARY).is_file()
        assert not (server.workdir / "backends" / "onnxruntime" / "model.py").exists()
        yield server
    finally:
        server.stop()
