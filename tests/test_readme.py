"""Every command of the README's runnable blocks works as written, against the served examples.

A block is runnable when the line before its fence says ``<!-- runnable ... -->``; synopses and
YAML are not. The commands' default addresses (127.0.0.1:8000 / :8001) become the test server's."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"<!-- runnable[^>]*-->\n```(\w+)\n(.*?)```", README, flags=re.S)
COMMANDS = [line.split("  #")[0].strip() for lang, body in BLOCKS if lang == "bash"
            for line in body.splitlines() if line.strip() and not line.startswith("#")]
PYTHON = [body for lang, body in BLOCKS if lang == "python"]


def test_the_readme_marks_its_runnable_blocks():
    assert len(COMMANDS) >= 8 and PYTHON


def test_every_file_the_readme_names_in_examples_inputs_exists():
    named = set(re.findall(r"examples/inputs/[\w.]+", README))
    assert named and all((ROOT / name).is_file() for name in named), sorted(n for n in named if not (ROOT / n).is_file())


def _addressed(argv: list[str], server, repo: Path, tmp_path: Path) -> list[str]:
    grpc = "-i" in argv and argv[argv.index("-i") + 1] == "grpc"
    argv = [a.replace("127.0.0.1:8000", server.http_url).replace("127.0.0.1:8001", server.grpc_url) for a in argv]
    argv = [str(repo) if a == "model_repository" else a for a in argv]
    argv = [str(tmp_path / "load-report") if a == "load-report/" else a for a in argv]
    if argv[0] == "triton-infer" and "-u" not in argv and "--url" not in argv:
        argv += ["-u", server.grpc_url if grpc else server.http_url]
    if argv[0] == "triton-load":
        argv += ["--host", server.grpc_url if grpc else f"http://{server.http_url}"]
        if "--out" not in argv:
            argv += ["--out", str(tmp_path / "report")]
    return [str(BIN / argv[0])] + argv[1:]


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs_as_written(served_examples, tmp_path, command):
    server, repo = served_examples
    argv = _addressed(shlex.split(command), server, repo, tmp_path)
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_readme_python_runs_as_written(served_examples, index):
    server, _ = served_examples
    code = PYTHON[index].replace("127.0.0.1:8000", server.http_url).replace("127.0.0.1:8001", server.grpc_url)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "label='setosa'" in done.stdout and "[0 1 2]" in done.stdout
