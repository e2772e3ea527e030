"""Run the tritonserver bundled in the nvidia-pytriton wheel on a model repository.

    with serve(Path("model_repository"), control_mode="poll") as server:
        client = server.grpc_client()
        ...

Measured on this stack (tritonserver 2.51.0 from nvidia-pytriton 0.7.0, no GPU):

- A config with ``instance_group { kind: KIND_GPU }`` fails to load ("instance group m_0 of
  model m has kind KIND_GPU but no GPUs are available"), and in Triton's own ``none`` and
  ``poll`` modes one failed model stops the server at start. The builder writes KIND_GPU for
  neural networks, and files must not be edited, so Triton always runs here with
  ``--model-control-mode=explicit`` and serve-repo loads every model through the load API,
  passing a config override (KIND_GPU -> KIND_CPU, ``gpus`` dropped) where the host has no GPU.
  serve-repo's own modes sit on top: ``none`` loads every model at start and then ignores the
  repository; ``poll`` also rescans the repository every ``poll_secs`` and loads, reloads or
  unloads what changed (a reload through the load API keeps the old version serving until the
  new one is ready); ``explicit`` loads only ``load_models`` and leaves the rest to clients.
- A Python stub that dies is not restarted: the model stays READY and every request fails
  with "Stub process '<instance>' is not healthy". A load of an unchanged model is a no-op, so
  the monitor unloads the model and loads it again (about 5 s for the unload, which waits on
  the dead stub, plus the load), and removes the dead stub's shared-memory region.
- Stubs name their shared-memory regions ``<prefix><uuid>`` in /dev/shm; the prefix is unique
  per server so that stop() removes exactly the regions this server made.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import json_format, text_format

from tritonforge.serving.backends import BACKEND_NAMES, BACKENDS_DIR

log = logging.getLogger("serve-repo")

CONTROL_MODES = ("none", "poll", "explicit")
STUB_NAME = "triton_python_backend_stub"
SHM_DIR = Path("/dev/shm")


class ServeError(Exception):
    """serve-repo could not bring the repository up; the message says which model and why."""


def _pytriton_root() -> Path:
    import pytriton

    return Path(pytriton.__file__).resolve().parent


def tritonserver_paths() -> dict[str, Path]:
    root = _pytriton_root()
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return {
        "binary": root / "tritonserver" / "bin" / "tritonserver",
        "python_backend": root / "tritonserver" / "backends" / "python",
        "stub": root / "tritonserver" / "python_backend_stubs" / py / STUB_NAME,
        "libs": root.parent / "nvidia_pytriton.libs",
    }


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def gpu_available() -> bool:
    """True when an NVIDIA device node exists (the same test as 'a GPU Triton could use')."""
    return Path("/dev/nvidia0").exists()


def repository_models(repo: Path) -> list[str]:
    """Model folders as Triton sees them: every sub-folder holding a config.pbtxt."""
    return sorted(p.name for p in repo.iterdir() if p.is_dir() and (p / "config.pbtxt").is_file())


def read_config(model_dir: Path):
    from tritonclient.grpc import model_config_pb2 as mc

    path = model_dir / "config.pbtxt"
    try:
        return text_format.Parse(path.read_text(), mc.ModelConfig())
    except (OSError, text_format.ParseError) as exc:
        raise ServeError(f"{path}: cannot read the model config: {exc}") from None


def cpu_config(config, *, gpu: bool):
    """The config as this host serves it: on a host without GPU, KIND_GPU becomes KIND_CPU.

    Returns (config, changed). KIND_AUTO and KIND_CPU stay as they are.
    """
    from tritonclient.grpc import model_config_pb2 as mc

    if gpu:
        return config, False
    served = mc.ModelConfig()
    served.CopyFrom(config)
    changed = False
    for group in served.instance_group:
        if group.kind == mc.ModelInstanceGroup.KIND_GPU:
            group.kind = mc.ModelInstanceGroup.KIND_CPU
            del group.gpus[:]
            changed = True
    return served, changed


def _fingerprint(model_dir: Path):
    """What poll mode watches: the config file and the set of version folders."""
    try:
        st = (model_dir / "config.pbtxt").stat()
        versions = sorted(p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, tuple(versions))


@dataclass
class _Stub:
    pid: int
    model: str
    version: str
    instance: str
    shm_region: str


def _proc_children_stubs(parent: int) -> dict[int, tuple[str, list[str]]]:
    """Processes whose parent is ``parent`` and which run the Python stub: pid -> (state, argv)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            rest = stat[stat.rindex(")") + 2:].split()
            state, ppid = rest[0], int(rest[1])
            if ppid != parent:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except (OSError, ValueError):
            continue
        if state == "Z" or (argv and argv[0].endswith(STUB_NAME)):
            found[int(entry)] = (state, argv)
    return found


def _become_subreaper() -> None:
    """Adopt orphaned descendants, so that stubs left as zombies by Triton can be reaped here
    (a container's PID 1 often reaps nothing)."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _pid_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return stat[stat.rindex(")") + 2:].split()[0]
    except (OSError, ValueError):
        return None


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

    process: subprocess.Popen | None = field(default=None, init=False)
    workdir: Path | None = field(default=None, init=False)
    log_path: Path | None = field(default=None, init=False)
    shm_prefix: str = field(default="", init=False)
    gpu: bool = field(default=False, init=False)
    recoveries: list[dict] = field(default_factory=list, init=False)

    def __post_init__(self):
        self.repo = Path(self.repo).resolve()
        if self.control_mode not in CONTROL_MODES:
            raise ServeError(
                f"unknown model control mode '{self.control_mode}' (choose {', '.join(CONTROL_MODES)})"
            )
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._busy: set[str] = set()
        self._stubs: dict[int, _Stub] = {}
        self._all_stub_pids: set[int] = set()
        self._seen: dict[str, tuple] = {}
        self._monitor: threading.Thread | None = None
        self._log_file = None

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
    def _make_backends_dir(self) -> Path:
        paths = tritonserver_paths()
        backends = self.workdir / "backends"
        python = backends / "python"
        python.mkdir(parents=True)
        # Copies, not links: Triton refuses a backend file whose real path escapes the
        # backends directory.
        for item in paths["python_backend"].iterdir():
            if item.is_file():
                shutil.copy2(item, python / item.name)
        # The Python backend looks for the stub beside libtriton_python.so.
        shutil.copy2(paths["stub"], python / STUB_NAME)
        for name in BACKEND_NAMES:
            shutil.copytree(BACKENDS_DIR / name, backends / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        return backends

    def command(self) -> list[str]:
        paths = tritonserver_paths()
        return [
            str(paths["binary"]),
            f"--model-repository={self.repo}",
            f"--backend-directory={self.workdir / 'backends'}",
            "--model-control-mode=explicit",
            "--strict-readiness=true",
            "--exit-on-error=false",
            "--exit-timeout-secs=5",
            f"--http-address={self.address}",
            f"--grpc-address={self.address}",
            f"--metrics-address={self.address}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            f"--log-verbose={self.log_verbose}",
            *self.extra_args,
        ]

    def _environment(self) -> dict[str, str]:
        paths = tritonserver_paths()
        env = dict(os.environ)
        # The stub runs the first python3 on PATH: it must be this interpreter's venv.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [str(paths["libs"])] + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else [])
        )
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        return env

    def start(self) -> "Server":
        if not self.repo.is_dir():
            raise ServeError(f"{self.repo}: no such model repository")
        self.gpu = gpu_available()
        _become_subreaper()
        self.workdir = Path(tempfile.mkdtemp(prefix="tritonforge-serve-"))
        try:
            self._make_backends_dir()
            self.shm_prefix = f"tritonforge_{uuid.uuid4().hex[:10]}_"
            self.http_port = self.http_port or free_port(self.address)
            self.grpc_port = self.grpc_port or free_port(self.address)
            self.metrics_port = self.metrics_port or free_port(self.address)
            self.log_path = Path(self.log_file).resolve() if self.log_file else self.workdir / "tritonserver.log"
            self._log_file = open(self.log_path, "wb")
            self.process = subprocess.Popen(
                self.command(),
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                cwd=self.workdir,
                # Its own session: Ctrl-C reaches serve-repo, which stops Triton in order.
                start_new_session=True,
            )
            self._wait_live()
            self._initial_load()
        except BaseException:
            self.stop()
            raise
        self._monitor = threading.Thread(target=self._monitor_loop, name="serve-repo-monitor", daemon=True)
        self._monitor.start()
        return self

    def _wait_live(self):
        deadline = time.monotonic() + self.ready_timeout
        url = f"http://{self.http_url}/v2/health/live"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServeError(
                    f"tritonserver exited with status {self.process.returncode} before it was live; "
                    f"log tail:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise ServeError(f"tritonserver was not live after {self.ready_timeout:.0f} s; log tail:\n{self.log_tail()}")

    def _initial_load(self):
        if self.control_mode == "explicit":
            wanted = list(self.load_models or ())
            if wanted == ["*"]:
                wanted = repository_models(self.repo)
        else:
            wanted = list(self.load_models) if self.load_models else repository_models(self.repo)
        # Ensembles last: loading one makes Triton load its missing steps from their files,
        # without the KIND_CPU override.
        wanted.sort(key=lambda n: (self._is_ensemble(n), n))
        failures = []
        for name in wanted:
            try:
                self.load(name)
            except ServeError as exc:
                failures.append(str(exc))
        if failures:
            raise ServeError(
                "; ".join(failures) + f"\nlog tail:\n{self.log_tail()}"
            )
        for name in repository_models(self.repo):
            self._seen[name] = _fingerprint(self.repo / name)

    # ---- model control ---------------------------------------------------------------
    def _is_ensemble(self, name: str) -> bool:
        try:
            return read_config(self.repo / name).platform == "ensemble"
        except ServeError:
            return False

    def served_config(self, name: str):
        """The config serve-repo loads ``name`` with, and whether it differs from the file."""
        return cpu_config(read_config(self.repo / name), gpu=self.gpu)

    def load(self, name: str) -> None:
        """Load (or reload, when changed) one model; raises ServeError naming it and the cause."""
        from tritonclient.utils import InferenceServerException

        if not (self.repo / name / "config.pbtxt").is_file():
            raise ServeError(f"model '{name}': no {self.repo / name / 'config.pbtxt'}")
        config, changed = self.served_config(name)
        kwargs = {}
        if changed:
            kwargs["config"] = json_format.MessageToJson(config, preserving_proto_field_name=True)
        with self._lock:
            self._busy.add(name)
        try:
            self.grpc_client().load_model(name, **kwargs)
        except InferenceServerException as exc:
            raise ServeError(f"model '{name}' failed to load: {exc.message()}") from None
        finally:
            with self._lock:
                self._busy.discard(name)
        log.info("model '%s' loaded%s", name, " (KIND_GPU served as KIND_CPU)" if changed else "")

    def unload(self, name: str, wait: float = 30.0) -> None:
        client = self.grpc_client()
        with self._lock:
            self._busy.add(name)
        try:
            client.unload_model(name)
            deadline = time.monotonic() + wait
            while wait > 0 and time.monotonic() < deadline:
                states = {m.name: m.state for m in client.get_model_repository_index().models if m.name == name}
                if states.get(name) not in ("READY", "UNLOADING"):
                    return
                time.sleep(0.05)
        finally:
            with self._lock:
                self._busy.discard(name)

    def model_states(self) -> dict[tuple[str, str], str]:
        index = self.grpc_client().get_model_repository_index()
        return {(m.name, m.version): m.state for m in index.models}

    # ---- monitor: poll mode and recovery of dead stubs --------------------------------
    def _monitor_loop(self):
        next_poll = time.monotonic() + self.poll_secs
        while not self._stop.wait(0.25):
            if self.process is None or self.process.poll() is not None:
                return
            try:
                if self.recovery:
                    self._check_stubs()
                if self.control_mode == "poll" and time.monotonic() >= next_poll:
                    self._poll_repository()
                    next_poll = time.monotonic() + self.poll_secs
            except Exception as exc:  # the monitor must outlive one bad scan
                if not self._stop.is_set():
                    log.warning("monitor: %s: %s", type(exc).__name__, exc)

    def _scan_stubs(self) -> dict[int, tuple[str, list[str]]]:
        found = _proc_children_stubs(self.process.pid)
        for pid, (state, argv) in found.items():
            if pid in self._stubs or state == "Z" or len(argv) < 9:
                continue
            try:
                rel = Path(argv[1]).resolve().relative_to(self.repo)
                model, version = rel.parts[0], rel.parts[1]
            except (ValueError, IndexError):
                continue
            self._stubs[pid] = _Stub(pid, model, version, argv[8], argv[2])
            self._all_stub_pids.add(pid)
        return found

    def _check_stubs(self):
        found = self._scan_stubs()
        dead = [s for pid, s in list(self._stubs.items())
                if pid not in found or found[pid][0] == "Z"]
        if not dead:
            return
        for stub in dead:
            self._stubs.pop(stub.pid, None)
        # A reload (a config override, a new version, an ensemble's dependency loaded again)
        # starts new stubs for the same instances, then retires the old ones while the model
        # stays READY: a stub whose instance lives on in a newer process was replaced, not lost.
        # Treating those as crashes reloads the model again, which retires stubs again: a loop.
        # The stub named after the model itself (not an instance) serves no request: the
        # Python backend starts it to read the model's config and ends it once the model is
        # loaded, so its end is never a crash either.
        alive = {(s.model, s.version, s.instance) for s in self._stubs.values()}
        benign = [s for s in dead if (s.model, s.version, s.instance) in alive or s.instance == s.model]
        self._remove_regions(s.shm_region for s in benign)
        dead = [s for s in dead if s not in benign]
        if not dead:
            return
        states = self.model_states()
        for model in sorted({s.model for s in dead}):
            died = [s for s in dead if s.model == model]
            with self._lock:
                busy = model in self._busy
            # A stub also ends when its version is unloaded; only a READY version with a
            # dead stub is broken.
            if busy or not any(states.get((s.model, s.version)) == "READY" for s in died):
                self._remove_regions(s.shm_region for s in died)
                continue
            self._recover(model, died)

    def _recover(self, model: str, died: list[_Stub]):
        started = time.monotonic()
        names = ", ".join(f"{s.instance} (pid {s.pid})" for s in died)
        log.warning("model '%s': backend process %s died; reloading", model, names)
        try:
            # Unloading a model whose stub is dead takes tens of seconds (Triton waits on the
            # stub); a load issued right after the unload request brings up fresh instances
            # meanwhile.
            self.unload(model, wait=0)
            self.load(model)
        except ServeError as exc:
            log.error("model '%s': reload after a dead backend process failed: %s", model, exc)
            self.recoveries.append({"model": model, "ok": False, "error": str(exc)})
            return
        finally:
            self._remove_regions(s.shm_region for s in died)
        took = time.monotonic() - started
        log.warning("model '%s': reloaded in %.1f s after its backend process died", model, took)
        self.recoveries.append({"model": model, "ok": True, "seconds": took, "instances": [s.instance for s in died]})

    def _poll_repository(self):
        current = {name: _fingerprint(self.repo / name) for name in repository_models(self.repo)}
        for name, fp in sorted(current.items(), key=lambda item: (self._is_ensemble(item[0]), item[0])):
            if fp is None or self._seen.get(name) == fp:
                continue
            before = self._seen.get(name)
            self._seen[name] = fp
            try:
                self.load(name)
                log.info("poll: model '%s' %s", name, "loaded" if before is None else "reloaded (changed on disk)")
            except ServeError as exc:
                log.error("poll: %s", exc)
        for name in set(self._seen) - set(current):
            self._seen.pop(name)
            try:
                self.unload(name)
                log.info("poll: model '%s' unloaded (gone from the repository)", name)
            except Exception as exc:
                log.error("poll: model '%s' failed to unload: %s", name, exc)

    # ---- stop ------------------------------------------------------------------------
    def _remove_regions(self, names):
        for name in names:
            if name and name.startswith(self.shm_prefix) and "/" not in name:
                with contextlib.suppress(FileNotFoundError):
                    (SHM_DIR / name).unlink()

    def leftovers(self) -> dict[str, list]:
        """Processes and shared-memory regions of this server still present (for tests)."""
        pids = [s.pid for s in self._stubs.values() if _pid_state(s.pid) not in (None, "Z")]
        if self.process is not None and self.process.poll() is None:
            pids.append(self.process.pid)
        regions = sorted(p.name for p in SHM_DIR.glob(f"{self.shm_prefix}*")) if self.shm_prefix else []
        return {"processes": pids, "shm_regions": regions}

    def stop(self, timeout: float = 20.0) -> None:
        """Stop Triton (SIGINT, then SIGKILL to its process group), its stubs, and clean up."""
        self._stop.set()
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=10)
        proc = self.process
        if proc is not None:
            with contextlib.suppress(Exception):
                self._scan_stubs()
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            # Stubs exit when their parent goes; any that linger are ours, by pid.
            deadline = time.monotonic() + 5
            for stub in list(self._stubs.values()):
                while _pid_state(stub.pid) not in (None, "Z") and time.monotonic() < deadline:
                    time.sleep(0.05)
                if _pid_state(stub.pid) not in (None, "Z"):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(stub.pid, signal.SIGKILL)
            # Dead stubs were Triton's children; orphaned now, they are ours to reap.
            time.sleep(0.1)
            for pid in self._all_stub_pids:
                _reap(pid)
        if self.shm_prefix:
            self._remove_regions(p.name for p in SHM_DIR.glob(f"{self.shm_prefix}*"))
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.workdir is not None and self.workdir.exists():
            keep = os.environ.get("TRITONFORGE_KEEP_SERVE_DIR")
            if not keep:
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
    ``poll_secs``, ``load_models``, ``ready_timeout``, ``recovery``.
    """
    server = Server(Path(repo), **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()
