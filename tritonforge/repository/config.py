"""``config.pbtxt`` as a ``ModelConfig`` message: rendered with ``text_format`` and parsed back, never
formatted by hand; the labels and warmup files a config names."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from .dtypes import config_type, numpy_dtype
from .layout import CONFIG_FILE, CONFIGS_DIR, variant_path
from .tensors import DYNAMIC, Signature, TensorSpec


class ConfigError(ValueError):
    """A config.pbtxt that cannot be read; the message names the file."""


def data_type(dtype) -> int:
    """The ``DataType`` enum value of a numpy dtype or a type name."""
    return mc.DataType.Value(config_type(dtype))


def dtype_of(data_type_value: int) -> np.dtype:
    return numpy_dtype(mc.DataType.Name(data_type_value))


def render(config: mc.ModelConfig) -> str:
    text = text_format.MessageToString(config)
    parse(text)  # the text must read back as the same message
    return text


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def read(path: Path) -> mc.ModelConfig:
    """A config file (``<model>/config.pbtxt`` or a model folder) as a message."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    try:
        return parse(path.read_text())
    except (OSError, UnicodeDecodeError, text_format.ParseError) as exc:
        raise ConfigError(f"{path}: cannot read the model config: {exc}") from None


def write(path: Path, config: mc.ModelConfig) -> None:
    """Write atomically: a polling Triton sees the old file or the new one, never half of one."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(render(config))
    os.replace(temporary, path)


def write_model(model_dir: Path, config: mc.ModelConfig, variants: dict[str, mc.ModelConfig] | None = None,
                kept: dict[str, str] | None = None) -> None:
    """The one writer of a model's configs: ``config.pbtxt`` and ``configs/<name>.pbtxt`` per variant.
    ``kept`` maps variant names to texts a later command wrote (tune-repo's winner), which a
    rebuild writes back unchanged instead of the generated variant."""
    model_dir = Path(model_dir)
    write(model_dir / CONFIG_FILE, config)
    names = set(variants or {}) | set(kept or {})
    if names:
        (model_dir / CONFIGS_DIR).mkdir(exist_ok=True)
    for name in sorted(names):
        path = variant_path(model_dir, name)
        if kept and name in kept:
            write(path, parse(kept[name]))
        else:
            write(path, variants[name])


def variant_texts(model_dir: Path, names) -> dict[str, str]:
    """The texts of the named ``configs/<name>.pbtxt`` files that exist: what a later command
    (tune-repo) wrote, which a rebuild writes back unchanged."""
    return {name: variant_path(model_dir, name).read_text() for name in names if variant_path(model_dir, name).is_file()}


def read_variant(model_dir: Path, name: str) -> mc.ModelConfig | None:
    """``configs/<name>.pbtxt`` of a model folder, or None where it has none (Triton then loads config.pbtxt)."""
    path = variant_path(model_dir, name)
    return read(path) if path.is_file() else None


def signature_of(config: mc.ModelConfig) -> Signature:
    """The tensors a config declares, batch dimension included when it batches."""
    lead = (DYNAMIC,) if config.max_batch_size > 0 else ()

    def specs(tensors):
        return tuple(TensorSpec(t.name, dtype_of(t.data_type), lead + tuple(t.dims)) for t in tensors)

    return Signature(specs(config.input), specs(config.output))


def warmup_bytes(row: np.ndarray) -> bytes:
    """One input row in the raw layout Triton reads warmup files in (BYTES: 4-byte length + data each)."""
    if row.dtype == object or row.dtype.kind in "US":
        out = bytearray()
        for item in row.reshape(-1):
            data = item if isinstance(item, bytes) else str(item).encode()
            out += len(data).to_bytes(4, "little") + data
        return bytes(out)
    return np.ascontiguousarray(row).tobytes()


@dataclass(frozen=True)
class VersionPolicy:
    """Which version folders Triton serves (a config's ``version_policy``)::

        VersionPolicy("specific", versions=(1,)).served([1, 2])   # [1]
        VersionPolicy("latest", count=2).served([1, 2, 3])        # [2, 3]
        str(VersionPolicy("all"))                                 # 'all'
    """

    kind: str  # latest | specific | all
    count: int = 1  # latest: how many of the highest versions
    versions: tuple[int, ...] = ()  # specific: which ones

    def served(self, on_disk: list[int]) -> list[int]:
        """The versions Triton serves from those on disk under this policy."""
        if self.kind == "all":
            return sorted(on_disk)
        if self.kind == "specific":
            return [v for v in sorted(on_disk) if v in self.versions]
        return sorted(on_disk)[-self.count:] if on_disk else []

    def as_dict(self) -> dict:
        return {"latest": {"kind": "latest", "count": self.count},
                "specific": {"kind": "specific", "versions": list(self.versions)}}.get(self.kind, {"kind": self.kind})

    def __str__(self) -> str:
        if self.kind == "specific":
            return "specific " + ",".join(map(str, self.versions))
        return f"latest {self.count}" if self.kind == "latest" else self.kind


def version_policy(config: mc.ModelConfig) -> VersionPolicy:
    """The config's policy; a config that names none gets Triton's default, the latest version."""
    which = config.version_policy.WhichOneof("policy_choice") if config.HasField("version_policy") else None
    if which == "all":
        return VersionPolicy("all")
    if which == "specific":
        return VersionPolicy("specific", versions=tuple(sorted(config.version_policy.specific.versions)))
    if which == "latest":
        return VersionPolicy("latest", count=config.version_policy.latest.num_versions or 1)
    return VersionPolicy("latest")


def with_version_policy(config: mc.ModelConfig, policy: VersionPolicy) -> mc.ModelConfig:
    """A copy of ``config`` that serves ``policy``; nothing else changes."""
    changed = mc.ModelConfig()
    changed.CopyFrom(config)
    changed.ClearField("version_policy")
    if policy.kind == "all":
        changed.version_policy.all.SetInParent()
    elif policy.kind == "specific":
        changed.version_policy.specific.versions.extend(policy.versions)
    else:
        changed.version_policy.latest.num_versions = policy.count
    return changed


def write_together(configs: dict[Path, mc.ModelConfig]) -> None:
    """Write several config files as close to together as renames allow: every text is rendered and
    written beside its file first (a config that does not render changes nothing), then each is
    renamed into place, so a polling Triton sees each file whole, old or new."""
    staged = []
    try:
        for path, config in configs.items():
            path = Path(path)
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_text(render(config))
            staged.append((temporary, path))
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, path in staged:
        os.replace(temporary, path)
