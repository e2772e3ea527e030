"""Every command of the README's runnable blocks works as written, against the served examples,
run as a reader runs it: in a fresh shell (no virtual environment on the PATH, a bare
environment) that first runs the README's own set-up lines, the block marked
``<!-- shell-setup ... -->`` near the top (``. .venv/bin/activate``).

A block is runnable when the line before its fence says ``<!-- runnable ... -->``; synopses and
YAML are not. The commands' default addresses (127.0.0.1:8000 / :8001) become the test server's."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"<!-- runnable[^>]*-->\n```(\w+)\n(.*?)```", README, flags=re.S)


def _lines(body: str) -> list[str]:
    return [line.split("  #")[0].strip() for line in body.splitlines() if line.strip() and not line.startswith("#")]


COMMANDS = [line for lang, body in BLOCKS if lang == "bash" for line in _lines(body)]
PYTHON = [body for lang, body in BLOCKS if lang == "python"]
SETUP_BLOCK = re.search(r"<!-- shell-setup[^>]*-->\n```bash\n(.*?)```", README, flags=re.S)
SETUP = _lines(SETUP_BLOCK.group(1)) if SETUP_BLOCK else []
# A new login's PATH, nothing of this session's: no .venv/bin, no VIRTUAL_ENV.
FRESH_ENV = {"HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", "TERM": "dumb",
             "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             **({"TMPDIR": os.environ["TMPDIR"]} if "TMPDIR" in os.environ else {})}


def in_fresh_shell(script: str, timeout: float, **env: str) -> subprocess.CompletedProcess:
    """Run ``script`` after the README's set-up lines in a new bash, no profile, from the checkout."""
    return subprocess.run(["/bin/bash", "--noprofile", "--norc", "-c", "\n".join(["set -e", *SETUP, script])],
                          cwd=ROOT, env={**FRESH_ENV, **env}, capture_output=True, text=True, timeout=timeout)


def test_the_readme_says_first_how_its_commands_are_reached():
    assert SETUP_BLOCK and SETUP == [". .venv/bin/activate"]
    assert README.index("<!-- shell-setup") < README.index("\n## ")  # before the first section
    top = README[:README.index("\n## ")]
    assert re.search(r"about \d+ min", top.split("scripts/demo.sh")[1].split("\n")[0])  # how long the demo takes
    assert re.search(r"about \d+ min", top.split("scripts/test.sh")[1].split("\n")[0])  # and the tests


def test_a_fresh_shell_has_no_command_until_the_readme_s_set_up_lines_run():
    bare = subprocess.run(["/bin/bash", "--noprofile", "--norc", "-c", "command -v triton-infer"], cwd=ROOT, env=FRESH_ENV,
                          capture_output=True, text=True, timeout=30)
    assert bare.returncode != 0  # so the tests below reach the commands only as the README says
    done = in_fresh_shell("command -v build-repo serve-repo triton-infer tune-repo compare-models", timeout=30)
    assert done.returncode == 0 and len(done.stdout.split()) == 5, done.stderr


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
    return argv


@pytest.fixture(scope="module")
def cost_server(built_examples_repo):
    """compare-models measures its cost over gRPC too (h2load), whose calls cancelled at the end of a
    run can crash tritonserver 2.51's gRPC server (server#7472): those commands get a server of
    their own, so that the session's shared one never takes h2load."""
    from tritonforge.serving import serve

    with serve(built_examples_repo, control_mode="explicit", load_models=("cancer_xgb", "cancer_keras"), recovery=False,
               http_port=0, grpc_port=0, metrics_port=0) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs_as_written(served_examples, request, tmp_path, command):
    server, repo = served_examples
    if command.startswith("compare-models") and "--no-cost" not in command:
        server = request.getfixturevalue("cost_server")
    argv = _addressed(shlex.split(command), server, repo, tmp_path)
    done = in_fresh_shell(shlex.join(argv), timeout=180)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_readme_python_runs_as_written(served_examples, index):
    server, _ = served_examples
    code = PYTHON[index].replace("127.0.0.1:8000", server.http_url).replace("127.0.0.1:8001", server.grpc_url)
    done = in_fresh_shell('python -c "$README_CODE"', timeout=120, README_CODE=code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "label='setosa'" in done.stdout and "[0 1 2]" in done.stdout
