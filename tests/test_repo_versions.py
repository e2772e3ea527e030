"""repo-versions: promotion and rollback through Triton's version_policy.

Which versions a model serves is set in every config it has (config.pbtxt and configs/<name>.pbtxt),
each file renamed into place, recorded in the manifest with who, when and why; versions are never
deleted; a version that does not exist, or words that are not a policy, change nothing. A polling
serve-repo follows a promotion and a rollback under wrk's load with no failed request.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from fixtures_serving import WEIGHTS, onnx_linear, wait_for
from tritonforge.repository import config as config_file
from tritonforge.repository import versions
from tritonforge.repository.config import VersionPolicy, version_policy
from tritonforge.repository.layout import config_files
from tritonforge.repository.manifest import Manifest
from tritonforge.versions import VersionsError, model_status, serve_versions
from tritonforge.versions.cli import main

X = np.ones((1, 4), dtype=np.float32)
ANSWER = {1: X @ WEIGHTS, 2: X @ (WEIGHTS * 2)}  # version 2 was built from doubled weights


@pytest.fixture(scope="module")
def built_twice(tmp_path_factory):
    """A repository where ``lin`` has versions 1 and 2 (a rebuild with changed weights), with the
    config.pbtxt and configs/cpu.pbtxt, configs/gpu.pbtxt that build-repo writes."""
    import onnx
    from onnx import numpy_helper

    from tritonforge.builder import BuildOptions, build_repository

    root = tmp_path_factory.mktemp("versions")
    src, repo = root / "models", root / "model_repository"
    onnx_linear(src / "lin.onnx")
    build_repository(src, repo, BuildOptions())
    model = onnx.load(str(src / "lin.onnx"))
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(WEIGHTS * 2, "W"))
    onnx.save(model, str(src / "lin.onnx"))
    build_repository(src, repo, BuildOptions())
    assert versions(repo / "lin") == [1, 2]
    assert [p.name for p in config_files(repo / "lin")] == ["config.pbtxt", "cpu.pbtxt", "gpu.pbtxt"]
    return repo


@pytest.fixture
def repo(built_twice, tmp_path):
    copy = tmp_path / "model_repository"
    shutil.copytree(built_twice, copy)
    return copy


def snapshot(repo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for p in sorted(repo.rglob("*")) if p.is_file()}


def without_policy(path: Path):
    config = config_file.read(path)
    config.ClearField("version_policy")
    return config


# --serve words -> the policy every config then holds, and the versions served of 1 and 2 on disk.
POLICIES = [
    ("1", VersionPolicy("specific", versions=(1,)), (1,)),
    ("2", VersionPolicy("specific", versions=(2,)), (2,)),
    ("2,1", VersionPolicy("specific", versions=(1, 2)), (1, 2)),
    ("all", VersionPolicy("all"), (1, 2)),
    ("latest", VersionPolicy("latest"), (2,)),
    ("latest:2", VersionPolicy("latest", count=2), (1, 2)),
]


@pytest.mark.parametrize("words, policy, served", POLICIES, ids=[p[0] for p in POLICIES])
def test_every_config_of_the_model_gets_the_policy_and_nothing_else_changes(repo, words, policy, served):
    before = snapshot(repo)
    others = {p: without_policy(p) for p in config_files(repo / "lin")}

    change = serve_versions(repo, "lin", words, why="test")

    assert change.served == served
    for path in config_files(repo / "lin"):  # configs/cpu.pbtxt and configs/gpu.pbtxt follow config.pbtxt
        assert version_policy(config_file.read(path)) == policy, path.name
        assert without_policy(path) == others[path], f"{path.name} changed beyond its version_policy"
    after = snapshot(repo)
    assert {k: v for k, v in after.items() if re.match(r"lin/\d+/", k)} == {k: v for k, v in before.items() if re.match(r"lin/\d+/", k)}
    assert model_status(repo, "lin").served == served


# (model, --serve words) -> the one line a user sees; the repository stays byte for byte.
REFUSALS = [
    ("lin", "7", "repo-versions: model 'lin' has no version 7 (on disk: 1, 2); nothing changed"),
    ("lin", "1,7,9", "repo-versions: model 'lin' has no version 7, 9 (on disk: 1, 2); nothing changed"),
    ("lin", "0", "repo-versions: model 'lin': cannot serve '0': say latest, latest:K, N, N,M,... or all; nothing changed"),
    ("lin", "01", "repo-versions: model 'lin': cannot serve '01': say latest, latest:K, N, N,M,... or all; nothing changed"),
    ("lin", "-1", "repo-versions: model 'lin': cannot serve '-1': say latest, latest:K, N, N,M,... or all; nothing changed"),
    ("lin", "1,,2", "repo-versions: model 'lin': cannot serve '1,,2': say latest, latest:K, N, N,M,... or all; nothing changed"),
    ("lin", "latest:0", "repo-versions: model 'lin': cannot serve 'latest:0': say latest, latest:K, N, N,M,... or all; nothing changed"),
    ("lin", "newest", "repo-versions: model 'lin': cannot serve 'newest': say latest, latest:K, N, N,M,... or all; nothing changed"),
    ("lin", "", "repo-versions: model 'lin': cannot serve '': say latest, latest:K, N, N,M,... or all; nothing changed"),
    ("nope", "1", "repo-versions: model 'nope': no such model in {repo} (models: lin)"),
    ("..", "1", "repo-versions: model '..': no such model in {repo} (models: lin)"),
]


@pytest.mark.parametrize("model, words, message", REFUSALS, ids=[f"{m}:{w}" for m, w, _ in REFUSALS])
def test_a_bad_request_is_refused_in_one_line_and_changes_nothing(repo, capsys, model, words, message):
    before = snapshot(repo)
    assert main([str(repo), model, "--serve", words]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [message.format(repo=repo)] and out == ""
    assert snapshot(repo) == before


def test_the_manifest_records_who_when_and_why_of_every_change(repo):
    serve_versions(repo, "lin", "1", why="pin before the canary")
    serve_versions(repo, "lin", "2", why="v2 passed compare-models")
    serve_versions(repo, "lin", "1", why="v2 misroutes setosa")

    history = Manifest(repo).serving_history("lin")
    assert [(h["previous"], h["policy"], h["served"], h["why"]) for h in history] == [
        ("latest 1", {"kind": "specific", "versions": [1]}, [1], "pin before the canary"),
        ("specific 1", {"kind": "specific", "versions": [2]}, [2], "v2 passed compare-models"),
        ("specific 2", {"kind": "specific", "versions": [1]}, [1], "v2 misroutes setosa"),
    ]
    for record in history:
        assert re.fullmatch(r"[^@\s]+@[^@\s]+", record["by"]) and record["command"] == "repo-versions"
        assert datetime.fromisoformat(record["at"]).tzinfo is not None
    # What build-repo recorded is still there, and both versions are still on disk.
    assert sorted(Manifest(repo).entry("lin")["versions"]) == ["1", "2"] and versions(repo / "lin") == [1, 2]


def test_an_unchanged_policy_writes_nothing_and_records_nothing(repo):
    serve_versions(repo, "lin", "2,1")
    before = snapshot(repo)
    change = serve_versions(repo, "lin", "1,2")
    assert change.files == () and change.record is None
    assert snapshot(repo) == before


def test_a_change_waits_for_no_build_it_is_refused_while_one_writes(repo):
    from tritonforge.builder.staging import exclusive

    before = snapshot(repo)
    with exclusive(repo):
        with pytest.raises(VersionsError, match=r"^model 'lin': .* is being written by another command .*; nothing changed$"):
            serve_versions(repo, "lin", "1")
    assert snapshot(repo) == before


def test_the_listing_shows_versions_on_disk_what_is_served_and_the_history(repo, capsys):
    assert main([str(repo), "lin"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0] == "lin: serves 2 (policy latest 1)"
    assert re.match(r"  1 +no ", listing[2]) and re.match(r"  2 +yes ", listing[3])
    assert listing[-1] == "  history: none (the policy build-repo wrote)"

    assert main([str(repo), "lin", "--serve", "1", "--why", "rollback"]) == 0
    assert capsys.readouterr().out.startswith(
        "repo-versions: lin serves 1 (policy specific 1, was latest 1); wrote config.pbtxt, configs/cpu.pbtxt, configs/gpu.pbtxt; recorded by ")
    assert main([str(repo), "lin"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0] == "lin: serves 1 (policy specific 1)"
    assert re.match(r"  1 +yes ", listing[2]) and re.match(r"  2 +no ", listing[3])
    assert re.fullmatch(r"    \S+  \S+@\S+  latest 1 -> specific 1 \(serves 1\)  why: rollback", listing[-1])


def test_a_pin_survives_a_rebuild_until_it_is_promoted(repo, tmp_path, capsys):
    """build-repo keeps the policy repo-versions set: a new version waits to be promoted."""
    import onnx
    from onnx import numpy_helper

    from tritonforge.builder import BuildOptions, build_repository

    serve_versions(repo, "lin", "1", why="pinned")
    onnx_linear(tmp_path / "models" / "lin.onnx")
    model = onnx.load(str(tmp_path / "models" / "lin.onnx"))
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(WEIGHTS * 3, "W"))
    onnx.save(model, str(tmp_path / "models" / "lin.onnx"))
    [built] = build_repository(tmp_path / "models", repo, BuildOptions())

    assert (built.status, built.version) == ("OK", 3)
    for path in [repo / "lin" / "config.pbtxt", *sorted((repo / "lin" / "configs").glob("*.pbtxt"))]:
        assert version_policy(config_file.read(path)) == VersionPolicy("specific", versions=(1,)), path
    assert main([str(repo), "lin"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0] == "lin: serves 1 (policy specific 1)"
    assert not any("note:" in line for line in listing)


def test_the_console_script_changes_and_refuses(repo):
    script = Path(sys.executable).parent / "repo-versions"
    done = subprocess.run([str(script), str(repo), "lin", "--serve", "all", "--why", "both"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert version_policy(config_file.read(repo / "lin" / "configs" / "cpu.pbtxt")) == VersionPolicy("all")
    done = subprocess.run([str(script), str(repo), "lin", "--serve", "3"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (2, "repo-versions: model 'lin' has no version 3 (on disk: 1, 2); nothing changed\n")


# ---- against a polling serve-repo ---------------------------------------------------------------

class LoadInBackground:
    """wrk against the model's unversioned endpoint (what clients call), in 2 s rounds until stopped,
    so the load covers every change however long Triton takes; each round's figures are kept."""

    def __init__(self, url: str, model: str) -> None:
        from tritonforge.loadtests.native import run_wrk

        self.rounds, self.problems = [], []
        self._stop = threading.Event()

        def loop() -> None:
            deadline = time.monotonic() + 240  # bounded whatever happens
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    self.rounds.append(run_wrk(url, model, {"input": X}, connections=8, seconds=2))
                except Exception as exc:  # wrk itself failing is a defect of the test setup
                    self.problems.append(str(exc))
                    return

        self._thread = threading.Thread(target=loop)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.rounds)

    @property
    def failures(self) -> int:
        return sum(r.errors for r in self.rounds)


def serves_only(client, version: int, other: int) -> bool:
    return client.is_model_ready("lin", str(version)) and not client.is_model_ready("lin", str(other))


def ask(client, version: int | None = None) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput("input", [1, 4], "FP32")
    tensor.set_data_from_numpy(X)
    return client.infer("lin", [tensor], model_version="" if version is None else str(version)).as_numpy("output")


@pytest.mark.slow
def test_promotion_and_rollback_under_load_fail_no_request(repo, capsys):
    from tritonclient.utils import InferenceServerException

    from tritonforge.serving.server import serve

    assert main([str(repo), "lin", "--serve", "1", "--why", "serve the stable version first"]) == 0
    with serve(repo, control_mode="poll", poll_secs=0.5) as server:  # serves configs/cpu.pbtxt
        client = server.grpc_client()
        assert serves_only(client, 1, 2)
        with LoadInBackground(server.http_url, "lin") as load:
            assert wait_for(lambda: load.requests > 0)
            assert main([str(repo), "lin", "--serve", "2", "--why", "promote"]) == 0
            promoted = wait_for(lambda: serves_only(client, 2, 1))
            np.testing.assert_allclose(ask(client), ANSWER[2])
            assert main([str(repo), "lin", "--serve", "1", "--why", "roll back"]) == 0
            rolled_back = wait_for(lambda: serves_only(client, 1, 2))
            during = load.requests
            assert wait_for(lambda: load.requests > during)  # the load goes on after the rollback
        print(f"\nrollback under load: {load.requests} requests in {len(load.rounds)} wrk rounds, {load.failures} failed")
        assert promoted and rolled_back
        assert load.problems == [] and load.requests > 0
        assert load.failures == 0, [r.as_dict() for r in load.rounds if r.errors]

        np.testing.assert_allclose(ask(client), ANSWER[1])
        np.testing.assert_allclose(ask(client, 1), ANSWER[1])
        with pytest.raises(InferenceServerException, match="unavailable|not found|not ready|unknown"):
            ask(client, 2)
    assert versions(repo / "lin") == [1, 2]
    assert [h["why"] for h in Manifest(repo).serving_history("lin")] == ["serve the stable version first", "promote", "roll back"]


@pytest.mark.slow
def test_two_versions_served_side_by_side_each_answer_with_their_own_weights(repo):
    from tritonforge.serving.server import serve

    with serve(repo, control_mode="poll", poll_secs=0.5) as server:
        client = server.grpc_client()
        assert serves_only(client, 2, 1)
        serve_versions(repo, "lin", "1,2", why="compare both")
        assert wait_for(lambda: client.is_model_ready("lin", "1") and client.is_model_ready("lin", "2"))
        np.testing.assert_allclose(ask(client, 1), ANSWER[1])
        np.testing.assert_allclose(ask(client, 2), ANSWER[2])
        np.testing.assert_allclose(ask(client), ANSWER[2])  # no version named: the highest served
        serve_versions(repo, "lin", "latest")
        assert wait_for(lambda: serves_only(client, 2, 1))
