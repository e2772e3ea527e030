"""``manifest.json``: what each entry was built from and how well it verified, per version."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import BuildError
from .layout import MANIFEST_FILE


class ManifestError(ValueError):
    """A manifest.json that cannot be read; the message names the file."""


class Manifest:
    """The manifest of one repository: ``{"models": {name: {..., "versions": {n: record}}}}``."""

    def __init__(self, repo: Path) -> None:
        self.path = Path(repo) / MANIFEST_FILE
        self.data: dict[str, Any] = {"tritonforge": "0.1.0", "models": {}}
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{self.path}: is not valid JSON ({exc.msg} at line {exc.lineno}); fix or remove it") from None

    def entry(self, name: str) -> dict[str, Any] | None:
        return self.data["models"].get(name)

    def latest(self, name: str) -> dict[str, Any] | None:
        entry = self.entry(name)
        if not entry:
            return None
        return entry["versions"].get(str(entry["latest_version"]))

    def record(self, name: str, version: int, common: dict[str, Any], record: dict[str, Any]) -> None:
        entry = self.data["models"].setdefault(name, {"versions": {}})
        entry.update(common)
        entry["latest_version"] = version
        entry["versions"][str(version)] = record

    def settle(self, name: str, version: int) -> None:
        """The version recorded as pending is now in place: the record stops saying pending."""
        self.data["models"][name]["versions"][str(version)].pop("pending", None)

    def drop_version(self, name: str, version: int) -> None:
        """Forget a version (one an interrupted build recorded but never moved in): the latest
        becomes the newest one left, and an entry with none left is forgotten."""
        entry = self.data["models"][name]
        entry["versions"].pop(str(version), None)
        if not entry["versions"]:
            del self.data["models"][name]
        elif entry["latest_version"] == version:
            entry["latest_version"] = max(int(v) for v in entry["versions"])

    def refuse_foreign(self, name: str) -> None:
        """A folder ``name`` in the repository that this manifest does not record was not built
        by tritonforge: the build never writes into it."""
        folder = self.path.parent / name
        if folder.exists() and self.entry(name) is None:
            raise BuildError(f"{folder} exists and was not built by tritonforge; refusing to touch it")

    def record_built_variants(self, name: str, variants, keep_others: bool = True) -> None:
        """Say that build-repo wrote these ``configs/<variant>.pbtxt`` of ``name``; a variant that
        another command wrote stays that command's, unless ``keep_others`` is False (the build
        wrote every variant anew)."""
        entry = self.data["models"][name]
        if not keep_others:
            entry["variants"] = {}
        recorded = entry.setdefault("variants", {})
        kept = self.kept_variants(name)
        for variant in variants:
            if variant not in kept:
                recorded[variant] = {"by": "build-repo"}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{MANIFEST_FILE}.tmp")
        temporary.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n")
        os.replace(temporary, self.path)

    def record_variant(self, name: str, variant: str, by: str, details: dict[str, Any] | None = None) -> None:
        """Say that ``configs/<variant>.pbtxt`` of ``name`` was written by ``by`` (a command other
        than build-repo, such as tune-repo): rebuilds keep that file; the previous record goes to history."""
        entry = self.data["models"][name]
        variants = entry.setdefault("variants", {})
        if variant in variants:
            entry.setdefault("variant_history", []).append({"variant": variant, **variants[variant]})
        variants[variant] = {"by": by, **(details or {})}

    def kept_variants(self, name: str) -> dict[str, dict[str, Any]]:
        """Variants of ``name`` that a command other than build-repo wrote."""
        entry = self.entry(name) or {}
        return {v: r for v, r in (entry.get("variants") or {}).items() if r.get("by") != "build-repo"}

    def record_serving(self, name: str, record: dict[str, Any]) -> None:
        """Say which versions ``name`` now serves (repo-versions: the policy, who, when, why);
        the previous record goes to ``serving_history``, so every change is kept."""
        entry = self.data["models"][name]
        if "serving" in entry:
            entry.setdefault("serving_history", []).append(entry["serving"])
        entry["serving"] = record

    def serving_history(self, name: str) -> list[dict[str, Any]]:
        """Every serving change of ``name``, oldest first, the current one last."""
        entry = self.entry(name) or {}
        return [*entry.get("serving_history", []), *([entry["serving"]] if "serving" in entry else [])]
