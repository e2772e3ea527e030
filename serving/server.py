"""Run the tritonserver bundled in the nvidia-pytriton wheel on a model repository.

    with serve(Path("model_repository"), control_mode="poll") as server:
        client = server.grpc_client()
        ...

:class:`Server` composes the jobs, each in its own module: :mod:`.process` (the tritonserver
process), :mod:`.loading` (the model-control API, which config a host serves), :mod:`.monitor`
(dead Python stubs, reloaded in place) and :mod:`.polling` (following the repository).

Measured on this stack (tritonserver 2.51.0 from nvidia-pytriton 0.7.0, no GPU):

- A config with ``instance_group { kind: KIND_GPU }`` fails to load ("instance group m_0 of
  model m has kind KIND_GPU but no GPUs are available"), and in Triton's own ``none`` and
  ``poll`` modes one failed model stops the server at start. So Triton always runs here with
  ``--model-control-mode=explicit`` and serve-repo loads every model through the load API.
  A repository with per-hardware configs is served with ``--model-config-name=cpu`` (or
  ``gpu`` on a GPU host) and needs no override; an older one whose configs say KIND_GPU is
  served with a config override (KIND_GPU -> KIND_CPU), never by editing files.
  serve-repo's own modes sit on top: ``none`` loads every model at start and then ignores the
  repository; ``poll`` also rescans the repository every ``poll_secs`` and loads, reloads or
  unloads what changed (a reload through the load API keeps the old version serving until the
  new one is ready); ``explicit`` loads only ``load_models`` and leaves the rest to clients.
- Stubs name their shared-memory regions ``<prefix><uuid>`` in /dev/shm; the prefix is unique
  per server so that stop() removes exactly the regions this server made.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import tritonforge.serving.process as triton  # the module itself: importing the package would loop back here
from tritonforge.serving.errors import ServeError
from tritonforge.repository import model_folders
from tritonforge.repository.integrity import drop_bytecode_caches
from tritonforge.serving.loading import ModelLoader, config_name_for, cpu_config, read_config
from tritonforge.serving.monitor import StubMonitor
from tritonforge.serving.polling import RepositoryPoller
from tritonforge.serving.process import free_port, gpu_available, proc_children_stubs as _proc_children_stubs

log = logging.getLogger("serve-repo")

CONTROL_MODES = ("none", "poll", "explicit")
DEFAULT_CACHE_BYTES = 64 << 20  # Triton's local response cache, used by models with response_cache enabled

__all__ = ["CONTROL_MODES", "ServeError", "Server", "config_name_for", "cpu_config", "free_port", "read_config",
           "serve", "_proc_children_stubs"]


@dataclass
class Server:
    """A running tritonserver on ``repo``; see :func:`serve`."""

    repo: Path
    address: str = "127.0.0.1"
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    control_mode: str = "poll"
    poll_secs: float = 2.0
    load_models: tuple[str, ...] | None = None
    ready_timeout: float = 180.0
    recovery: bool = True
    log_verbose: int = 0
    log_file: Path | None = None
    extra_args: tuple[str, ...] = ()
    cache_bytes: int = DEFAULT_CACHE_BYTES
    config_name: str | None = "auto"  # --model-config-name: auto picks cpu/gpu where the repository has it

    process: subprocess.Popen | None = field(default=None, init=False)
    workdir: Path | None = field(default=None, init=False)
    log_path: Path | None = field(default=None, init=False)
    shm_prefix: str = field(default="", init=False)
    gpu: bool = field(default=False, init=False)

    def __post_init__(self):
        self.repo = Path(self.repo).resolve()
        if self.control_mode not in CONTROL_MODES:
            raise ServeError(f"unknown model control mode '{self.control_mode}' (choose {', '.join(CONTROL_MODES)})")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log_file = None
        self.loader: ModelLoader | None = None
        self.monitor: StubMonitor | None = None
        self.poller: RepositoryPoller | None = None

    # ---- addresses and clients -------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"{self.address}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.address}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.address}:{self.metrics_port}/metrics"

    def grpc_client(self):
        import tritonclient.grpc as grpcclient

        return grpcclient.InferenceServerClient(self.grpc_url)

    def http_client(self, **kwargs):
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(self.http_url, **kwargs)

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    # ---- start -----------------------------------------------------------------------
    def command(self) -> list[str]:
        return triton.command_line(
            self.repo, self.workdir / "backends", address=self.address, http_port=self.http_port,
            grpc_port=self.grpc_port, metrics_port=self.metrics_port, shm_prefix=self.shm_prefix,
            log_verbose=self.log_verbose, cache_bytes=self.cache_bytes, config_name=self.config_name,
            extra_args=self.extra_args,
        )

    def start(self) -> "Server":
        if not self.repo.is_dir():
            raise ServeError(f"{self.repo}: no such model repository")
        self.gpu = gpu_available()
        if self.config_name == "auto":
            self.config_name = config_name_for(self.repo, self.gpu)
        triton.become_subreaper()
        drop_bytecode_caches(self.repo)
        self.workdir = Path(tempfile.mkdtemp(prefix="tritonforge-serve-"))
        try:
            triton.make_backends_dir(self.workdir)
            self.shm_prefix = f"tritonforge_{uuid.uuid4().hex[:10]}_"
            self.http_port = self.http_port or free_port(self.address)
            self.grpc_port = self.grpc_port or free_port(self.address)
            self.metrics_port = self.metrics_port or free_port(self.address)
            self.log_path = Path(self.log_file).resolve() if self.log_file else self.workdir / "tritonserver.log"
            self.loader = ModelLoader(self.repo, self.grpc_client, gpu=self.gpu, variant=self.config_name)
            self.monitor = StubMonitor(self.repo, self.loader, self.shm_prefix)
            self.poller = RepositoryPoller(self.repo, self.loader)
            self.process, self._log_file = triton.launch(self.command(), self.workdir, self.log_path)
            triton.wait_live(self.process, self.http_url, self.ready_timeout, self.log_tail)
            self._initial_load()
        except BaseException:
            self.stop()
            raise
        self._thread = threading.Thread(target=self._monitor_loop, name="serve-repo-monitor", daemon=True)
        self._thread.start()
        return self

    def _initial_load(self):
        if self.control_mode == "explicit":
            wanted = list(self.load_models or ())
            if wanted == ["*"]:
                wanted = model_folders(self.repo)
        else:
            wanted = list(self.load_models) if self.load_models else model_folders(self.repo)
        # Ensembles last: loading one makes Triton load its missing steps from their files,
        # without any override.
        wanted.sort(key=lambda n: (self.loader.is_ensemble(n), n))
        failures = []
        for name in wanted:
            try:
                self.load(name)
            except ServeError as exc:
                failures.append(str(exc))
        if failures:
            raise ServeError("; ".join(failures) + f"\nlog tail:\n{self.log_tail()}")
        self.poller.remember_all()

    # ---- model control ---------------------------------------------------------------
    def served_config(self, name: str):
        """The config serve-repo loads ``name`` with, and whether it differs from the file Triton reads."""
        return self.loader.served_config(name)

    def load(self, name: str) -> None:
        """Load (or reload, when changed) one model; raises ServeError naming it and the cause."""
        note = self.loader.load(name)
        log.info("model '%s' loaded%s", name, note)

    def unload(self, name: str, wait: float = 30.0) -> None:
        self.loader.unload(name, wait)

    def model_states(self) -> dict[tuple[str, str], str]:
        return self.loader.states()

    # ---- stubs -----------------------------------------------------------------------
    @property
    def stubs(self) -> dict:
        """The Python stubs seen so far, by pid (monitor.Stub: model, version, instance, region)."""
        return self.monitor.stubs if self.monitor else {}

    def scan_stubs(self) -> None:
        if self.monitor and self.process is not None:
            self.monitor.scan(self.process.pid)

    @property
    def recoveries(self) -> list[dict]:
        return self.monitor.recoveries if self.monitor else []

    def _monitor_loop(self):
        next_poll = time.monotonic() + self.poll_secs
        while not self._stop.wait(0.25):
            if self.process is None or self.process.poll() is not None:
                return
            try:
                if self.recovery:
                    self.monitor.check(self.process.pid)
                if self.control_mode == "poll" and time.monotonic() >= next_poll:
                    self.poller.poll()
                    next_poll = time.monotonic() + self.poll_secs
            except Exception as exc:  # the monitor must outlive one bad scan
                if not self._stop.is_set():
                    log.warning("monitor: %s: %s", type(exc).__name__, exc)

    # ---- stop ------------------------------------------------------------------------
    def leftovers(self) -> dict[str, list]:
        """Processes and shared-memory regions of this server still present (for tests)."""
        pids = self.monitor.live_pids() if self.monitor else []
        if self.process is not None and self.process.poll() is None:
            pids.append(self.process.pid)
        return {"processes": pids, "shm_regions": self.monitor.regions() if self.monitor else []}

    def stop(self, timeout: float = 20.0) -> None:
        """Stop Triton (SIGINT, then SIGKILL to its process group), its stubs, and clean up."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if self.process is not None:
            with contextlib.suppress(Exception):
                self.scan_stubs()
            triton.terminate(self.process, timeout)
            self.monitor.stop_stubs()
        if self.monitor is not None:
            self.monitor.remove_regions(self.monitor.regions())
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.workdir is not None and self.workdir.exists() and not os.environ.get("TRITONFORGE_KEEP_SERVE_DIR"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Server":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def serve(repo, **options):
    """Start tritonserver on ``repo`` and yield the :class:`Server`; stop it on exit.

    Options are :class:`Server`'s fields: ``address``, ``http_port``/``grpc_port``/
    ``metrics_port`` (0 = a free port), ``control_mode`` (none, poll, explicit),
    ``poll_secs``, ``load_models``, ``ready_timeout``, ``recovery``, ``cache_bytes``, ``config_name``.
    """
    server = Server(Path(repo), **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
