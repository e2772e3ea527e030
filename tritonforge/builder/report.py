"""The build report: one line per model, for people."""
from __future__ import annotations

from .results import BuildResult


def line(result: BuildResult) -> str:
    if result.status == "FAILED":
        return f"{result.name:<26} FAILED  {result.reason}  ({result.seconds:.1f}s)"
    shapes = result.signature.describe() if result.signature else result.reason
    error = "-" if result.max_error is None else f"{result.max_error:.2g}"
    return (f"{result.name:<26} {result.status:<9} {result.framework:>8} -> {result.format:<11} v{result.version}  "
            f"{shapes}  max err {error}  {result.seconds:.1f}s")


def summary(results: list[BuildResult]) -> str:
    failed = sum(not r.ok for r in results)
    built = sum(r.status == "OK" for r in results)
    unchanged = sum(r.status == "UNCHANGED" for r in results)
    return f"{len(results)} models: {built} built, {unchanged} unchanged, {failed} failed"
