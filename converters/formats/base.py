"""What an artifact format is: where the file goes, which platform runs it, how to read and run it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from tritonforge.repository import Signature

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class ArtifactFormat(Protocol):
    name: str
    platform: str  # Triton's platform string
    filename: str  # Triton's default model filename inside a version folder

    def read_signature(self, path: Path, declared: Signature | None) -> Signature: ...

    def runner(self, path: Path) -> Runner: ...
