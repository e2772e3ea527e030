"""The build report: one line per model, for people, in fixed columns."""
from __future__ import annotations

from .results import BuildResult

# Column widths: the longest generated names (<model>_postprocess) and frameworks (tensorflow) fit.
NAME, STATUS, FRAMEWORK, FORMAT, VERSION = 32, 9, 10, 11, 4


def line(result: BuildResult) -> str:
    if result.status == "FAILED":
        return f"{result.name:<{NAME}} {'FAILED':<{STATUS}} {result.reason}  ({result.seconds:.1f}s)"
    shapes = result.signature.describe() if result.signature else result.reason
    error = "-" if result.max_error is None else f"{result.max_error:.2g}"
    return (f"{result.name:<{NAME}} {result.status:<{STATUS}} {result.framework:>{FRAMEWORK}} -> {result.format:<{FORMAT}} "
            f"{'v' + str(result.version):<{VERSION}} {shapes}  max err {error}  {result.seconds:.1f}s")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def summary(results: list[BuildResult]) -> str:
    failed = sum(not r.ok for r in results)
    built = sum(r.status == "OK" for r in results)
    unchanged = sum(r.status == "UNCHANGED" for r in results)
    return f"{plural(len(results), 'model')}: {built} built, {unchanged} unchanged, {failed} failed"
