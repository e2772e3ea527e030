"""The tritonserver process from the nvidia-pytriton wheel: its files, command line, environment,
start, liveness and stop, and the /proc look-ups that find its Python stubs."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tritonforge.serving.backends import BACKEND_NAMES, BACKENDS_DIR
from tritonforge.serving.errors import ServeError

STUB_NAME = "triton_python_backend_stub"


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
        "caches": root / "tritonserver" / "caches",
    }


def command_line(repo: Path, backends: Path, *, address: str, http_port: int, grpc_port: int, metrics_port: int,
                 shm_prefix: str, log_verbose: int = 0, cache_bytes: int = 0, config_name: str | None = None,
                 extra_args=()) -> list[str]:
    """tritonserver's command line. Always ``explicit`` control: one model that fails to load
    stops the server at start in Triton's ``none`` and ``poll`` modes (serve-repo's own modes
    sit on top, through the load API)."""
    paths = tritonserver_paths()
    return [
        str(paths["binary"]),
        f"--model-repository={repo}",
        f"--backend-directory={backends}",
        "--model-control-mode=explicit",
        "--strict-readiness=true",
        "--exit-on-error=false",
        "--exit-timeout-secs=5",
        f"--http-address={address}",
        f"--grpc-address={address}",
        f"--metrics-address={address}",
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port}",
        f"--metrics-port={metrics_port}",
        # Stubs name their /dev/shm regions <prefix><uuid>: a prefix per server lets stop()
        # remove exactly this server's regions.
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        f"--log-verbose={log_verbose}",
        *([f"--cache-directory={paths['caches']}", f"--cache-config=local,size={cache_bytes}"] if cache_bytes else []),
        *([f"--model-config-name={config_name}"] if config_name else []),
        *extra_args,
    ]


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def gpu_available() -> bool:
    """True when an NVIDIA device node exists (the same test as 'a GPU Triton could use')."""
    return Path("/dev/nvidia0").exists()


def make_backends_dir(workdir: Path) -> Path:
    """The Python backend, its stub and the CPU backends, copied into ``workdir/backends``."""
    paths = tritonserver_paths()
    backends = workdir / "backends"
    python = backends / "python"
    python.mkdir(parents=True)
    # Copies, not links: Triton refuses a backend file whose real path escapes the backends directory.
    for item in paths["python_backend"].iterdir():
        if item.is_file():
            shutil.copy2(item, python / item.name)
    # The Python backend looks for the stub beside libtriton_python.so.
    shutil.copy2(paths["stub"], python / STUB_NAME)
    for name in BACKEND_NAMES:
        shutil.copytree(BACKENDS_DIR / name, backends / name, ignore=shutil.ignore_patterns("__pycache__"))
    return backends


def environment() -> dict[str, str]:
    paths = tritonserver_paths()
    env = dict(os.environ)
    # The stub runs the first python3 on PATH: it must be this interpreter's venv.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [str(paths["libs"])] + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else [])
    )
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def launch(command: list[str], workdir: Path, log_path: Path) -> tuple[subprocess.Popen, object]:
    """Start tritonserver in its own session (Ctrl-C reaches serve-repo, which stops it in order)."""
    log_file = open(log_path, "wb")
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=environment(), cwd=workdir,
                               start_new_session=True)
    return process, log_file


def wait_live(process: subprocess.Popen, http_url: str, timeout: float, log_tail) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://{http_url}/v2/health/live"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServeError(f"tritonserver exited with status {process.returncode} before it was live; "
                             f"log tail:\n{log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise ServeError(f"tritonserver was not live after {timeout:.0f} s; log tail:\n{log_tail()}")


def terminate(process: subprocess.Popen, timeout: float) -> None:
    """SIGINT (Triton unloads its models), then SIGKILL to its process group."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def proc_children_stubs(parent: int) -> dict[int, tuple[str, list[str]]]:
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


def become_subreaper() -> None:
    """Adopt orphaned descendants, so that stubs left as zombies by Triton can be reaped here
    (a container's PID 1 often reaps nothing)."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return stat[stat.rindex(")") + 2:].split()[0]
    except (OSError, ValueError):
        return None
