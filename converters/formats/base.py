"""What an artifact format is: where the file goes, which platform runs it, how to read and run it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from tritonforge.repository import Signature

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class ArtifactFormat(Protocol):
    name: str
    platform: str  # Triton's platform string, or "" for a format named by backend
    backend: str
    prefers_gpu: bool
    filename: str  # Triton's default model filename inside a version folder

    def read_signature(self, path: Path, declared: Signature | None) -> Signature: ...

    def runner(self, path: Path) -> Runner: ...

    def artifact_name(self, adapter) -> str: ...

    def config_parameters(self, path: Path, rules) -> dict[str, str]: ...

    def cross_checks(self, path: Path) -> tuple[tuple[str, Runner], ...]: ...


class FormatDefaults:
    """What most formats share: a platform, one fixed file name, no second predictor."""

    backend = ""  # formats named by backend rather than platform set it (FIL)
    prefers_gpu = False  # True where the format exists for the GPU whatever the framework

    def artifact_name(self, adapter) -> str:
        return self.filename

    def config_parameters(self, path: Path, rules) -> dict[str, str]:
        """Backend parameters the artifact needs on every host (``rules``: the release's ReleaseRules)."""
        return {}

    def cross_checks(self, path: Path) -> tuple[tuple[str, Runner], ...]:
        """Independent predictors of the artifact, beside :meth:`runner`, that verification also compares."""
        return ()
