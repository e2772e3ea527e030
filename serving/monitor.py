"""The stub monitor: notice a Python stub that died and reload its model in place.

A Python stub that dies is not restarted by Triton: the model stays READY and every request
fails with "Stub process '<instance>' is not healthy". serve-repo reloads the model in place
(a load with a changed config override: Triton brings up new instances first and retires the
old ones after), so the model and every ensemble using it stay listed; only requests in
flight on the dead instance fail.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from tritonforge.serving.errors import ServeError
from tritonforge.serving.loading import ModelLoader
from tritonforge.serving.process import pid_state, proc_children_stubs, reap

log = logging.getLogger("serve-repo")
SHM_DIR = Path("/dev/shm")


@dataclass
class Stub:
    pid: int
    model: str
    version: str
    instance: str
    shm_region: str


class StubMonitor:
    """The Python stubs of one tritonserver process, by pid, and what to do when one dies."""

    def __init__(self, repo: Path, loader: ModelLoader, shm_prefix: str) -> None:
        self.repo = repo
        self.loader = loader
        self.shm_prefix = shm_prefix
        self.stubs: dict[int, Stub] = {}
        self.all_pids: set[int] = set()
        self.recoveries: list[dict] = []

    def scan(self, server_pid: int) -> dict[int, tuple[str, list[str]]]:
        found = proc_children_stubs(server_pid)
        for pid, (state, argv) in found.items():
            if pid in self.stubs or state == "Z" or len(argv) < 9:
                continue
            try:
                rel = Path(argv[1]).resolve().relative_to(self.repo)
                model, version = rel.parts[0], rel.parts[1]
            except (ValueError, IndexError):
                continue
            self.stubs[pid] = Stub(pid, model, version, argv[8], argv[2])
            self.all_pids.add(pid)
        return found

    def check(self, server_pid: int) -> None:
        found = self.scan(server_pid)
        dead = [s for pid, s in list(self.stubs.items()) if pid not in found or found[pid][0] == "Z"]
        if not dead:
            return
        for stub in dead:
            self.stubs.pop(stub.pid, None)
        # A reload (a config override, a new version, an ensemble's dependency loaded again)
        # starts new stubs for the same instances, then retires the old ones while the model
        # stays READY: a stub whose instance lives on in a newer process was replaced, not lost.
        # Treating those as crashes reloads the model again, which retires stubs again: a loop.
        # The stub named after the model itself (not an instance) serves no request: the
        # Python backend starts it to read the model's config and ends it once the model is
        # loaded, so its end is never a crash either.
        alive = {(s.model, s.version, s.instance) for s in self.stubs.values()}
        benign = [s for s in dead if (s.model, s.version, s.instance) in alive or s.instance == s.model]
        self.remove_regions(s.shm_region for s in benign)
        dead = [s for s in dead if s not in benign]
        if not dead:
            return
        states = self.loader.states()
        for model in sorted({s.model for s in dead}):
            died = [s for s in dead if s.model == model]
            # A stub also ends when its version is unloaded; only a READY version with a
            # dead stub is broken.
            if self.loader.is_busy(model) or not any(states.get((s.model, s.version)) == "READY" for s in died):
                self.remove_regions(s.shm_region for s in died)
                continue
            self.recover(model, died)

    def recover(self, model: str, died: list[Stub]) -> None:
        started = time.monotonic()
        names = ", ".join(f"{s.instance} (pid {s.pid})" for s in died)
        log.warning("model '%s': backend process %s died; reloading in place", model, names)
        try:
            self.loader.load(model, in_place=True)
        except ServeError as exc:
            log.error("model '%s': reload after a dead backend process failed: %s", model, exc)
            self.recoveries.append({"model": model, "ok": False, "error": str(exc)})
            return
        finally:
            self.remove_regions(s.shm_region for s in died)
        took = time.monotonic() - started
        log.warning("model '%s': reloaded in %.1f s after its backend process died", model, took)
        self.recoveries.append({"model": model, "ok": True, "seconds": took, "instances": [s.instance for s in died]})

    def remove_regions(self, names) -> None:
        for name in names:
            if name and name.startswith(self.shm_prefix) and "/" not in name:
                with contextlib.suppress(FileNotFoundError):
                    (SHM_DIR / name).unlink()

    def regions(self) -> list[str]:
        """This server's shared-memory regions still in /dev/shm."""
        return sorted(p.name for p in SHM_DIR.glob(f"{self.shm_prefix}*")) if self.shm_prefix else []

    def live_pids(self) -> list[int]:
        return [s.pid for s in self.stubs.values() if pid_state(s.pid) not in (None, "Z")]

    def stop_stubs(self, wait: float = 5.0) -> None:
        """After Triton stopped: stubs exit when their parent goes; any that linger are ours, by
        pid. Dead stubs were Triton's children; orphaned now, they are ours to reap."""
        deadline = time.monotonic() + wait
        for stub in list(self.stubs.values()):
            while pid_state(stub.pid) not in (None, "Z") and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_state(stub.pid) not in (None, "Z"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(stub.pid, signal.SIGKILL)
        time.sleep(0.1)
        for pid in self.all_pids:
            reap(pid)
