"""The published index: the marker that says publish-repo owns a prefix, and the sha256 of every
file it published there. A file is listed only once it is in the bucket whole, so a reader that
follows the index never takes a version before its files."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .errors import FleetError

INDEX_FILE = ".tritonforge-publish.json"  # a top-level file: Triton reads only folders there as models
TOOL = "tritonforge publish-repo"


@dataclass
class Index:
    files: dict[str, str] = field(default_factory=dict)  # rel -> sha256
    publishes: int = 0
    published_at: str | None = None
    # Configs a publish pinned in the bucket and has not restored yet (it was cut short): the next
    # publish restores them even though their listed hash equals the repository's.
    pinned: list[str] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return (json.dumps({"tool": TOOL, "publishes": self.publishes, "published_at": self.published_at,
                            "pinned": sorted(self.pinned), "files": dict(sorted(self.files.items()))}, indent=1) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> "Index":
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FleetError(f"{where}/{INDEX_FILE}: is not valid JSON ({exc}); it was not written by publish-repo") from None
        if not isinstance(raw, dict) or raw.get("tool") != TOOL or not isinstance(raw.get("files"), dict):
            raise FleetError(f"{where}/{INDEX_FILE}: was not written by publish-repo; refusing to touch {where}")
        return cls(dict(raw["files"]), int(raw.get("publishes", 0)), raw.get("published_at"), list(raw.get("pinned", [])))

    def stamp(self) -> None:
        self.publishes += 1
        self.published_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
