"""The build report: one line per model, for people, in fixed columns."""
from __future__ import annotations

from .results import BuildResult

# Column widths: the longest generated names (<model>_postprocess) and frameworks (tensorflow) fit.
NAME, STATUS, FRAMEWORK, FORMAT, VERSION = 32, 9, 10, 11, 4


def line(result: BuildResult) -> str:
    if result.status in ("FAILED", "SKIPPED"):
        return f"{result.name:<{NAME}} {result.status:<{STATUS}} {result.reason}  ({result.seconds:.1f}s)"
    shapes = result.signature.describe() if result.signature else result.reason
    error = "-" if result.max_error is None else readable_error(result.max_error)
    return (f"{result.name:<{NAME}} {result.status:<{STATUS}} {result.framework:>{FRAMEWORK}} -> {result.format:<{FORMAT}} "
            f"{'v' + str(result.version):<{VERSION}} {shapes}  max err {error}  {result.seconds:.1f}s")


def readable_error(error: float) -> str:
    """An error as a person reads it: exact zeros are 0, anything below float32's resolution is
    below 1e-9 (1.2e-108 says nothing more), the rest to two digits."""
    if error == 0:
        return "0"
    if error < 1e-9:
        return "<1e-9"
    return f"{error:.2g}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def summary(results: list[BuildResult]) -> str:
    failed = sum(not r.ok for r in results)
    built = sum(r.status == "OK" for r in results)
    unchanged = sum(r.status == "UNCHANGED" for r in results)
    skipped = sum(r.status == "SKIPPED" for r in results)
    more = f", {skipped} skipped" if skipped else ""  # (fused entries that cannot be made)
    return f"{plural(len(results), 'model')}: {built} built, {unchanged} unchanged, {failed} failed{more}"
