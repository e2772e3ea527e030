"""One model's build as one value: what each stage of :mod:`.stages` reads and what it adds.

>>> build = ModelBuild(source, context)       # discover found the source
>>> for stage in STAGES: build = stage(build)  # each stage fills in its fields, or raises BuildError
>>> build.results                              # one BuildResult per entry written (or left unchanged)
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..converters.probe import FileProbe
from ..ensembles import Entry
from ..repository import Signature
from ..repository.manifest import Manifest
from ..sidecar import FolderSidecars, Sidecar
from ..verify import OutputError
from .configure import ServingSettings
from .files import tool_versions
from .releases import DEFAULT_RELEASE, TritonRelease
from .results import BuildResult

DEFAULT_MAX_BATCH_SIZE = 64


@dataclass(frozen=True)
class BuildOptions:
    format: str | None = None  # default target format where the framework supports it; else ONNX
    device: str = "auto"  # auto | cpu | gpu
    allow_pickle: bool = False
    triton_version: str = DEFAULT_RELEASE
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    warmup: bool = True
    allow_outside: tuple[Path, ...] = ()  # folders sidecar paths and model symlinks may point into
    precisions: tuple[str, ...] = ()  # reduced-precision entries for every model: int8, fp16
    validate: bool = False  # Triton loads each entry and answers its samples before it is moved in (build-repo: on)
    fuse: bool = False  # <ensemble>_fused beside every ensemble whose steps can be one ONNX graph (the sidecar's fuse: wins)


@dataclass(frozen=True)
class ModelSource:
    """A model as discovery found it: its Triton name, its file or folder, its own sidecar."""

    name: str
    path: Path
    sidecar: Path | None


@dataclass(frozen=True)
class BuildContext:
    """What every model's build in one run shares."""

    repo: Path
    manifest: Manifest
    options: BuildOptions
    release: TritonRelease
    sidecars: FolderSidecars
    validator: Any = None  # a TritonValidator when options.validate


@dataclass(frozen=True)
class Verified:
    """The sample rows, the source framework's answers, and how far the artifact is from them."""

    samples: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    errors: tuple[OutputError, ...]
    atol: float
    rtol: float
    run_artifact: Callable


@dataclass
class ModelBuild:
    """One model on its way through the stages. Each stage reads the fields earlier stages set and
    sets its own; ``finished`` says an earlier stage settled the outcome (an unchanged model)."""

    source: ModelSource
    context: BuildContext
    sidecar: Sidecar | None = None
    probe: FileProbe | None = None
    adapter: Any = None  # the framework adapter that recognised the source
    format: Any = None  # the target ArtifactFormat
    kind: str = "cpu"  # where the model belongs on a host with a GPU: gpu | cpu
    precisions: tuple[str, ...] = ()  # reduced-precision entries asked for
    fingerprint: str = ""
    model: Any = None  # the loaded source model
    version: int = 0  # the version this build writes
    staged: Path | None = None  # the staging folder of the entry, beside the repository
    artifact: Path | None = None
    signature: Signature | None = None
    verified: Verified | None = None
    version_files: dict[str, str] = field(default_factory=dict)  # sha256 of each file of the version written
    covered: list[str] = field(default_factory=list)
    rows_cover: list[str] = field(default_factory=list)  # what the verification rows exercised ("NaN", ...), for the manifest
    refuse_nan: tuple[str, ...] = ()  # float inputs the model cannot take NaN in  # the input shapes verification ran, for the manifest
    labels: tuple[str, ...] | None = None  # class names of labels_output, when known
    settings: ServingSettings | None = None
    config: Any = None  # the portable ModelConfig
    variants: dict = field(default_factory=dict)  # per-host ModelConfigs by name
    kept_variants: dict[str, str] = field(default_factory=dict)  # variant texts another command wrote
    entries: list[Entry] = field(default_factory=list)  # step and ensemble entries around the model
    ensemble_errors: tuple[OutputError, ...] = ()
    entry_errors: dict[str, tuple[OutputError, ...]] = field(default_factory=dict)  # an entry's own (a fused entry's)
    gate: tuple[dict, dict] | None = None  # rows and answers that judge reduced-precision entries
    results: list[BuildResult] = field(default_factory=list)
    finished: bool = False
    cleanup: ExitStack = field(default_factory=ExitStack)  # staging folders, removed when the build ends

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def repo(self) -> Path:
        return self.context.repo

    @property
    def manifest(self) -> Manifest:
        return self.context.manifest

    @property
    def model_dir(self) -> Path:
        return self.context.repo / self.source.name

    @property
    def labels_output(self) -> str | None:
        return self.settings.labels_output if self.settings else None

    def facts(self, **more: Any) -> dict[str, Any]:
        """What the manifest records of an entry of this source, beside its versions."""
        return {"source": self.source.path.name, "triton_version": self.context.release.name, **more}

    def record(self, **more: Any) -> dict[str, Any]:
        """What the manifest records of a version this build wrote."""
        checked = self.verified
        return {"fingerprint": self.fingerprint, "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "signature": self.signature.describe(), "atol": checked.atol, "rtol": checked.rtol,
                "errors": error_record(checked.errors), "tools": tool_versions(), **more}


def error_record(errors: tuple[OutputError, ...]) -> dict[str, dict[str, float]]:
    return {e.name: {"max_abs": e.max_abs, "max_rel": e.max_rel} for e in errors}
