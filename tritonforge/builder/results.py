"""The outcome of building one model: one line of the report and one manifest record."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..repository import Signature
from ..repository.manifest import Manifest
from ..verify import OutputError


class Status(StrEnum):
    OK = "OK"  # built: a new version
    UNCHANGED = "UNCHANGED"  # the latest version was built from the same inputs and settings
    FAILED = "FAILED"  # nothing of this entry was written
    SKIPPED = "SKIPPED"  # not written, and not asked for as such: a fused entry its steps cannot make (the reason says why)


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
    status: Status = Status.FAILED
    reason: str = ""
    errors: tuple[OutputError, ...] = ()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in (Status.OK, Status.UNCHANGED, Status.SKIPPED)

    @property
    def max_error(self) -> float | None:
        return max((e.max_abs for e in self.errors), default=None)


def unchanged_result(name: str, source: str, manifest: Manifest) -> BuildResult:
    """The report line of an entry left as it was: its latest version's record, as it was measured."""
    entry, record = manifest.entry(name), manifest.latest(name)
    errors = tuple(OutputError(output, e["max_abs"], e["max_rel"], record["atol"], record["rtol"], True)
                   for output, e in record.get("errors", {}).items())
    return BuildResult(name, source, entry["framework"], entry["format"], None, entry["latest_version"], Status.UNCHANGED,
                       reason=record.get("signature", ""), errors=errors)
