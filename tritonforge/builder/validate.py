"""The validate stage's server: Triton itself loads each entry before it is moved in, and answers
its stored samples like the source framework did. One bundled tritonserver serves a scratch
repository for the whole build run (started on first use, stopped when the run ends), so a
config Triton refuses, or an artifact that answers otherwise when Triton serves it, fails the
model with Triton's own message and leaves the repository as it was."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..errors import BuildError
from ..repository import SAMPLES_FILE
from ..serving.check import answers_like_samples
from ..serving.errors import ServeError
from ..serving.loading import read_config
from ..serving.server import Server

VALIDATE_CONFIG = "cpu"  # the variant serve-repo serves on this host; config.pbtxt where a model has none


class TritonValidator:
    """Loads staged entries in a bundled tritonserver on 127.0.0.1 and asks them their samples."""

    def __init__(self) -> None:
        self.scratch: Path | None = None
        self.server: Server | None = None

    def check(self, name: str, staged: Path, version: int, source: str, framework: str) -> None:
        """Raise BuildError when Triton refuses the staged entry or it answers unlike its samples."""
        server = self._started()
        target = self.scratch / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(staged, target)
        try:
            server.load(name)
        except ServeError as exc:
            raise BuildError(f"{source}: Triton refuses the entry: {_first_line(exc)}") from None
        try:
            config = read_config(target, VALIDATE_CONFIG)
            ok, text = answers_like_samples(server.http_url, name, str(version), config, target / str(version) / SAMPLES_FILE)
        except Exception as exc:
            raise BuildError(f"{source}: Triton loaded the entry but could not be asked its samples: {_first_line(exc)}") from None
        finally:
            try:
                server.unload(name)
            except ServeError:
                pass  # the next load replaces it
        if not ok:
            raise BuildError(f"{source}: served by Triton, the entry does not answer like {framework}: {text}")

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


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
