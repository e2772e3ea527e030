"""The validate stage's server: Triton itself loads each entry before it is moved in, and answers
its stored samples like the source framework did. One bundled tritonserver serves a scratch
repository for the whole build run (started on first use, stopped when the run ends), so a
config Triton refuses, or an artifact that answers otherwise when Triton serves it, fails the
model with Triton's own message and leaves the repository as it was.

A model's entries are checked as one set (:meth:`TritonValidator.check_set`): the model, its
Python steps and its ensembles copied in together, loaded steps-first, each with samples asked
them, then all unloaded. The set costs one copy and one load per entry on a server that is
already up, which is the least that proves Triton takes every config; the reduced entries
(``_int8``/``_fp16``) are made after the model is in place and are checked one by one."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..ensembles import Entry
from ..errors import BuildError
from ..repository import SAMPLES_FILE, versions
from ..serving.check import answers_like_samples
from ..serving.errors import ServeError
from ..serving.loading import read_config
from ..serving.server import Server
from .files import stage_entry

VALIDATE_CONFIG = "cpu"  # the variant serve-repo serves on this host; config.pbtxt where a model has none


@dataclass(frozen=True)
class Staged:
    """One entry staged beside the repository, as it will be moved in.

    >>> Staged("iris", Path("/repo/.staging-iris-x"), 2, "sklearn")  # version 2 of iris, answers like sklearn
    """

    name: str
    folder: Path  # holds <version>/ and config.pbtxt
    version: int
    answers_like: str  # what its stored samples came from, for the mismatch message


def stage_entries(entries: list[Entry], repo: Path, scratch: Path, answers_like: str) -> list[Staged]:
    """Each step or ensemble entry written under ``scratch`` as its next version, exactly as
    :func:`.files.write_entry` will write it into ``repo``."""
    staged = []
    for entry in entries:
        version = (versions(repo / entry.name) or [0])[-1] + 1
        folder = scratch / entry.name
        folder.mkdir()
        stage_entry(folder, entry, version)
        staged.append(Staged(entry.name, folder, version, answers_like))
    return staged


class TritonValidator:
    """Loads staged entries in a bundled tritonserver on 127.0.0.1 and asks them their samples."""

    def __init__(self) -> None:
        self.scratch: Path | None = None
        self.server: Server | None = None

    def check(self, name: str, staged: Path, version: int, source: str, framework: str) -> None:
        """Raise BuildError when Triton refuses the staged entry or it answers unlike its samples."""
        self.check_set(source, [Staged(name, staged, version, framework)])

    def check_set(self, source: str, entries: list[Staged]) -> None:
        """Raise BuildError (naming ``source`` and Triton's message) when Triton refuses any of the
        entries, or one with samples answers unlike them; every entry is unloaded after."""
        server = self._started()
        for entry in entries:
            target = self.scratch / entry.name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(entry.folder, target)
        # Steps and models before the ensembles that call them: a refusal then names the entry
        # Triton refuses, not the ensemble that needed it.
        ordered = sorted(entries, key=lambda e: read_config(self.scratch / e.name).platform == "ensemble")
        loaded = []
        try:
            for entry in ordered:
                try:
                    server.load(entry.name)
                except ServeError as exc:
                    raise BuildError(f"{source}: Triton refuses the entry: {_load_cause(server, entry.name, exc)}") from None
                loaded.append(entry.name)
            for entry in ordered:
                self._ask(server, source, entry)
        finally:
            for name in reversed(loaded):  # ensembles first, then what they call
                try:
                    server.unload(name)
                except ServeError:
                    pass  # the next load replaces it

    def _ask(self, server: Server, source: str, entry: Staged) -> None:
        target = self.scratch / entry.name
        samples = target / str(entry.version) / SAMPLES_FILE
        if not samples.is_file():
            return  # a Python step: loaded (config and initialize) is its check; its ensemble answers for it
        try:
            config = read_config(target, VALIDATE_CONFIG)
            ok, text = answers_like_samples(server.http_url, entry.name, str(entry.version), config, samples)
        except Exception as exc:
            raise BuildError(f"{source}: Triton loaded the entry '{entry.name}' but could not be asked its samples: "
                             f"{_first_line(exc)}") from None
        if not ok:
            raise BuildError(f"{source}: served by Triton, the entry '{entry.name}' does not answer like "
                             f"{entry.answers_like}: {text}")

    def _started(self) -> Server:
        if self.server is None:
            self.scratch = Path(tempfile.mkdtemp(prefix="tritonforge-validate-"))
            server = Server(self.scratch, control_mode="explicit", load_models=(), config_name=VALIDATE_CONFIG,
                            recovery=False, cache_bytes=1 << 20)
            try:
                server.start()
            except ServeError as exc:
                raise BuildError(f"the bundled tritonserver did not start to validate entries: {_first_line(exc)} "
                                 f"(build with --no-validate to skip this check)") from None
            self.server = server
        return self.server

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None


def _load_cause(server: Server, name: str, exc: Exception) -> str:
    """The load API answers a config that fails Triton's validation with only "failed to poll from
    model repository"; the reason is in the server's log ("Poll failed for model directory 'm': ...")."""
    text = _first_line(exc)
    if "failed to poll from model repository" in text:
        marker = f"Poll failed for model directory '{name}': "
        found = [line for line in server.log_tail(200).splitlines() if marker in line]
        if found:
            return f"model '{name}': {found[-1].split(marker, 1)[1].rstrip().rstrip(chr(34))}"
    return text


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
