"""The words of ``--serve``: which versions a model should serve, as a :class:`VersionPolicy`."""
from __future__ import annotations

import re

from tritonforge.repository.config import VersionPolicy

from .errors import VersionsError

SPEC_HELP = "latest, latest:K, N, N,M,... or all"


def parse_serve(model: str, text: str) -> VersionPolicy:
    """``latest`` (the highest version), ``latest:K`` (the K highest), ``N`` or ``N,M,...``
    (those versions), ``all``. Anything else is refused with the model and the words named."""
    words = text.strip().lower()
    if words == "all":
        return VersionPolicy("all")
    if words == "latest":
        return VersionPolicy("latest")
    latest = re.fullmatch(r"latest:([1-9][0-9]{0,5})", words)
    if latest:
        return VersionPolicy("latest", count=int(latest.group(1)))
    # Triton reads only folders named by positive integers without leading zeros as versions.
    if re.fullmatch(r"[1-9][0-9]{0,17}(,[1-9][0-9]{0,17})*", words):
        return VersionPolicy("specific", versions=tuple(sorted({int(v) for v in words.split(",")})))
    raise VersionsError(f"model '{model}': cannot serve '{text}': say {SPEC_HELP}; nothing changed")
