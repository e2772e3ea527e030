"""What a model has and serves: versions on disk, the policy in each config, every recorded change."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tritonforge.repository import config as config_file
from tritonforge.repository import versions
from tritonforge.repository.config import VersionPolicy, version_policy
from tritonforge.repository.layout import config_files
from tritonforge.repository.manifest import Manifest, ManifestError

from .change import model_dir_of
from .errors import VersionsError


@dataclass(frozen=True)
class ModelStatus:
    model: str
    on_disk: tuple[int, ...]
    policies: dict[str, VersionPolicy]  # file (relative to the model folder) -> its policy
    built_at: dict[int, str]  # version -> when build-repo built it, where the manifest says
    history: tuple[dict, ...]  # serving changes, oldest first

    @property
    def policy(self) -> VersionPolicy:
        return self.policies["config.pbtxt"]

    @property
    def served(self) -> tuple[int, ...]:
        return tuple(self.policy.served(list(self.on_disk)))

    def lines(self) -> list[str]:
        """The terminal listing."""
        out = [f"{self.model}: serves {', '.join(map(str, self.served)) or 'nothing'} (policy {self.policy})"]
        differing = {f: str(p) for f, p in self.policies.items() if p != self.policy}
        if differing:
            out.append("  configs that differ: " + ", ".join(f"{f} says {p}" for f, p in sorted(differing.items())))
        out.append(f"  {'version':<8} {'served':<7} built")
        for version in self.on_disk:
            out.append(f"  {version:<8} {'yes' if version in self.served else 'no':<7} {self.built_at.get(version, '-')}")
        recorded = _policy_text(self.history[-1]["policy"]) if self.history else None
        if recorded and recorded != str(self.policy):
            # build-repo keeps the policy; a config edited by hand (or an older build-repo) does not.
            out.append(f"  note: the last change recorded set {recorded}; the configs now say {self.policy} "
                       "(changed outside repo-versions)")
        out.append("  history:" if self.history else "  history: none (the policy build-repo wrote)")
        for change in self.history:
            why = f"  why: {change['why']}" if change.get("why") else ""
            out.append(f"    {change['at']}  {change['by']}  {change['previous']} -> {_policy_text(change['policy'])}"
                       f" (serves {', '.join(map(str, change['served']))}){why}")
        return out


def model_status(repo: Path, model: str) -> ModelStatus:
    repo = Path(repo)
    model_dir = model_dir_of(repo, model)
    try:
        policies = {str(p.relative_to(model_dir)): version_policy(config_file.read(p)) for p in config_files(model_dir)}
        manifest = Manifest(repo)
    except (ManifestError, config_file.ConfigError) as exc:
        raise VersionsError(f"model '{model}': {exc}") from None
    entry = manifest.entry(model) or {}
    built = {int(v): r.get("built_at", "-") for v, r in (entry.get("versions") or {}).items() if v.isdigit()}
    return ModelStatus(model, tuple(versions(model_dir)), policies, built, tuple(manifest.serving_history(model)))


def _policy_text(record: dict) -> str:
    kind = record["kind"]
    return str(VersionPolicy(kind, count=record.get("count", 1), versions=tuple(record.get("versions", ()))))
