"""Look at a model file without trusting it: magic bytes, zip members, and unpickling only when allowed."""
from __future__ import annotations

import pickletools
import re
import zipfile
from functools import cached_property
from pathlib import Path

from tritonforge.errors import BuildError

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
TORCH_SAVE_SUFFIXES = (".pt", ".pth")  # torch.save: a zip around a pickle


class FileProbe:
    """What a file or folder looks like from outside, for the adapters' ``detect``."""

    def __init__(self, path: Path, allow_pickle: bool = False, sidecar=None) -> None:
        self.path = path
        self.allow_pickle = allow_pickle
        self.sidecar = sidecar  # the model's settings, where they say what the bytes do not (a YOLO head's layout)

    @cached_property
    def head(self) -> bytes:
        if self.path.is_dir():
            return b""
        with open(self.path, "rb") as f:
            return f.read(64)

    @cached_property
    def zip_names(self) -> list[str]:
        if self.path.is_dir() or not zipfile.is_zipfile(self.path):
            return []
        try:
            with zipfile.ZipFile(self.path) as archive:
                return archive.namelist()
        except zipfile.BadZipFile:
            return []

    def has_member(self, suffix: str) -> bool:
        return any(name.endswith(suffix) for name in self.zip_names)

    @property
    def suffix(self) -> str:
        return self.path.suffix.lower()

    @cached_property
    def is_plain_pickle(self) -> bool:
        """A pickle stream (scikit-learn, joblib, XGBoost wrappers), told by its opcodes, not its name."""
        if self.path.is_dir() or not self.head:
            return False
        if self.head[:1] == b"\x80" and len(self.head) > 1 and 2 <= self.head[1] <= 5:
            return True
        if self.suffix in PICKLE_SUFFIXES:
            try:
                with open(self.path, "rb") as f:
                    next(pickletools.genops(f))
                return True
            except Exception:
                return False
        return False

    @cached_property
    def is_torch_pickle(self) -> bool:
        """``torch.save`` of a whole module: a zip whose ``data.pkl`` is an arbitrary pickle."""
        return self.has_member("/data.pkl") and not self.has_member("/constants.pkl")

    @property
    def is_pickle(self) -> bool:
        return self.is_plain_pickle or self.is_torch_pickle

    def unpickle(self):
        """Load a pickle-based file; only with --allow-pickle, since loading one runs its code, and
        only when its name says pickle: one named .json or .keras is a disguise, never loaded."""
        loadable = PICKLE_SUFFIXES + (TORCH_SAVE_SUFFIXES if self.is_torch_pickle else ())
        if self.suffix not in loadable:
            kind = "torch.save pickle" if self.is_torch_pickle else "pickle"
            raise BuildError(
                f"{self.path.name}: is a {kind} named '{self.suffix or '(no suffix)'}'; pickles are loaded only from "
                f"{', '.join(loadable)} files (and only with --allow-pickle): rename it if you trust it"
            )
        if not self.allow_pickle:
            raise BuildError(
                f"{self.path.name}: is a pickle-based file and loading it runs code from the file; "
                "pass --allow-pickle if you trust it"
            )
        return self._unpickled

    @cached_property
    def _unpickled(self):
        try:
            if self.is_torch_pickle:
                import torch

                return torch.load(self.path, weights_only=False, map_location="cpu")
            import joblib

            return joblib.load(self.path)
        except Exception as exc:  # a truncated or foreign pickle fails in many ways
            hint = ""
            if isinstance(exc, AttributeError) and "Can't get attribute" in str(exc):
                hint = ("; the pickle names a class that is not importable here (defined in a script's __main__?): "
                        "put it in a module on PYTHONPATH, or save with torch.export / skops instead")
            elif isinstance(exc, ModuleNotFoundError) and exc.name:
                package = PACKAGE_OF_MODULE.get(exc.name.split(".")[0], exc.name.split(".")[0])
                alternative = "torch.export (.pt2)" if self.is_torch_pickle else "skops or ONNX"
                hint = (f"; it needs the Python package '{package}' to be loaded: install it beside tritonforge "
                        f"(pip install {package}), or save the model with {alternative}, which needs no module")
            raise BuildError(f"{self.path.name}: cannot be unpickled ({type(exc).__name__}: {one_line(exc)}){hint}") from None


# Modules whose package is named otherwise on PyPI.
PACKAGE_OF_MODULE = {"sklearn": "scikit-learn", "cv2": "opencv-python-headless", "PIL": "pillow", "yaml": "pyyaml"}

_NATIVE_PREFIX = re.compile(r"^\[\d\d:\d\d:\d\d\] \S+:\d+: ")  # XGBoost's "[05:33:12] /src/x.cc:779: "


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    # Native libraries append their C++ stack; the sentence before it is the cause.
    text = _NATIVE_PREFIX.sub("", text.split(" Stack trace:")[0])
    return text if len(text) <= limit else text[: limit - 3] + "..."
