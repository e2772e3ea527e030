"""The outcome of building one model: one line of the report and one manifest record."""
from __future__ import annotations

from dataclasses import dataclass

from ..repository import Signature
from ..verify import OutputError


@dataclass(frozen=True)
class BuildResult:
    """The outcome of building one model.

    >>> BuildResult("iris", "iris.json", "xgboost", "onnx", signature, 1, "OK", errors=(error,))
    """

    name: str
    source: str
    framework: str = "?"
    format: str = "?"
    signature: Signature | None = None
    version: int | None = None
    status: str = "FAILED"  # OK, UNCHANGED or FAILED
    reason: str = ""
    errors: tuple[OutputError, ...] = ()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in ("OK", "UNCHANGED")

    @property
    def max_error(self) -> float | None:
        return max((e.max_abs for e in self.errors), default=None)
