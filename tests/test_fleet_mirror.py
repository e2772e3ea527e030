"""Reading a published repository back: a local mirror that follows the bucket (what serve-repo
s3://... serves), and repo-versions promoting and rolling back a repository that lives in a bucket.

The mirror is checked where it matters, after every single object a publish writes or deletes: its
folder never holds part of a version, and never a config that serves a version it lacks.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from fixtures_serving import WEIGHTS, wait_for
from tritonforge.fleet import BucketMirror, FleetError, bucket_copy, publish_repository
from tritonforge.repository import config as config_file
from tritonforge.repository import versions
from tritonforge.repository.config import VersionPolicy, version_policy
from tritonforge.repository.layout import config_files
from tritonforge.repository.manifest import Manifest
from tritonforge.versions import serve_versions
from tritonforge.versions.cli import main as repo_versions

X = np.ones((1, 4), dtype=np.float32)
ANSWER = {1: X @ WEIGHTS, 2: X @ (WEIGHTS * 2)}


def files_of(repo: Path) -> dict[str, bytes]:
    return {p.relative_to(repo).as_posix(): p.read_bytes() for p in sorted(repo.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(repo).parts)}


def half_taken(local: Path, source: Path) -> list[str]:
    """What a server reading ``local`` could load wrongly: a version folder that differs from the
    source's, or a config that serves a version the folder lacks."""
    problems = []
    for model_dir in (p for p in local.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for version in versions(model_dir):
            mine = {k: v for k, v in files_of(local).items() if k.startswith(f"{model_dir.name}/{version}/")}
            theirs = {k: v for k, v in files_of(source).items() if k.startswith(f"{model_dir.name}/{version}/")}
            if mine != theirs:
                problems.append(f"{model_dir.name}/{version} holds {sorted(mine)} of {sorted(theirs)}")
        for path in config_files(model_dir):
            if path.is_file():
                policy = version_policy(config_file.read(path))
                missing = [v for v in policy.versions if v not in versions(model_dir)]
                if missing or (policy.kind != "specific" and not versions(model_dir)):
                    problems.append(f"{path.relative_to(local)} serves {policy} with versions {versions(model_dir)}")
    return problems


@pytest.fixture
def repo(lin_repos, tmp_path) -> Path:
    copy = tmp_path / "model_repository"
    shutil.copytree(lin_repos.v2, copy)
    return copy


def test_a_mirror_holds_what_was_published_and_a_second_round_changes_nothing(s3_url, repo, tmp_path):
    publish_repository(repo, s3_url)
    mirror = BucketMirror(s3_url, tmp_path / "mirror")
    first = mirror.sync()
    assert files_of(tmp_path / "mirror") == files_of(repo)
    assert set(first.changed) >= {"lin/1", "lin/2", "lin configs", "manifest.json"} and first.waiting == ()
    again = mirror.sync()
    assert (again.changed, again.waiting) == ((), ())


@pytest.mark.parametrize("keep", [None, 1], ids=["keep-all", "keep-1"])
def test_a_mirror_synced_after_every_object_of_a_publish_never_holds_half_a_version(s3_url, lin_repos, tmp_path, keep):
    publish_repository(lin_repos.v1, s3_url)
    mirror = BucketMirror(s3_url, tmp_path / "mirror")
    mirror.sync()
    problems, rounds = [], []

    def sync_now(action, rel):
        rounds.append(mirror.sync())
        problems.extend(f"after {action} {rel}: {p}" for p in half_taken(tmp_path / "mirror", lin_repos.v2))

    publish_repository(lin_repos.v2, s3_url, keep=keep, on_step=sync_now)

    assert problems == [] and len(rounds) >= 6
    assert sum("lin/2" in r.changed for r in rounds) == 1  # taken whole, once the index listed all its files
    mirror.sync()
    expected = files_of(lin_repos.v2)
    if keep == 1:
        expected = {k: v for k, v in expected.items() if not k.startswith("lin/1/")}
    assert files_of(tmp_path / "mirror") == expected


def test_a_promotion_and_a_rollback_published_reach_the_mirror(s3_url, repo, tmp_path):
    publish_repository(repo, s3_url)
    mirror = BucketMirror(s3_url, tmp_path / "mirror")
    mirror.sync()
    for served in ("1", "2"):
        serve_versions(repo, "lin", served, why=f"serve {served}")
        publish_repository(repo, s3_url)
        report = mirror.sync()
        assert report.changed == ("lin configs", "manifest.json")
        for path in config_files(tmp_path / "mirror" / "lin"):
            assert version_policy(config_file.read(path)) == VersionPolicy("specific", versions=(int(served),))


def test_a_prefix_with_nothing_published_is_refused_in_one_line(s3_url, tmp_path):
    with pytest.raises(FleetError) as refused:
        BucketMirror(s3_url, tmp_path / "mirror").sync()
    assert str(refused.value) == (f"{s3_url}: nothing published there (no .tritonforge-publish.json); "
                                  f"publish a repository with publish-repo first")
    assert not (tmp_path / "mirror" / "lin").exists()


def stamps(s3_server, url: str) -> dict[str, tuple]:
    from tritonforge.fleet import BucketUrl

    where = BucketUrl.parse(url)
    listed = s3_server.client().list_objects_v2(Bucket=where.bucket, Prefix=where.prefix + "/").get("Contents", [])
    return {where.rel(o["Key"]): (o["ETag"], o["LastModified"]) for o in listed}


def test_repo_versions_promotes_and_rolls_back_in_the_bucket_without_touching_a_version(s3_server, s3_url, repo, tmp_path, capsys):
    publish_repository(repo, s3_url)
    before = stamps(s3_server, s3_url)

    assert repo_versions([s3_url, "lin", "--serve", "1", "--why", "v2 misroutes setosa"]) == 0
    assert repo_versions([s3_url, "lin", "--serve", "2", "--why", "fixed"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("repo-versions: lin serves 1 (policy specific 1, was latest 1); wrote config.pbtxt, configs/cpu.pbtxt, configs/gpu.pbtxt")
    assert out[1] == f"repo-versions: published to {s3_url}: uploaded 4 files ({out[1].split('(')[1].split(')')[0]}), deleted 0, 5 unchanged"

    after = stamps(s3_server, s3_url)
    assert {k: v for k, v in after.items() if k.startswith("lin/1/") or k.startswith("lin/2/")} == \
           {k: v for k, v in before.items() if k.startswith("lin/1/") or k.startswith("lin/2/")}
    BucketMirror(s3_url, tmp_path / "mirror").sync()
    assert [h["why"] for h in Manifest(tmp_path / "mirror").serving_history("lin")] == ["v2 misroutes setosa", "fixed"]
    assert version_policy(config_file.read(tmp_path / "mirror" / "lin" / "configs" / "cpu.pbtxt")) == VersionPolicy("specific", versions=(2,))
    assert repo_versions([s3_url, "lin"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "lin: serves 2 (policy specific 2)"


def test_repo_versions_refuses_a_missing_version_in_the_bucket_and_writes_nothing(s3_server, s3_url, repo, capsys):
    publish_repository(repo, s3_url)
    before = stamps(s3_server, s3_url)
    assert repo_versions([s3_url, "lin", "--serve", "7"]) == 2
    assert capsys.readouterr().err == "repo-versions: model 'lin' has no version 7 (on disk: 1, 2); nothing changed\n"
    assert stamps(s3_server, s3_url) == before


def test_a_change_through_a_bucket_copy_publishes_only_what_changed(s3_url, repo):
    publish_repository(repo, s3_url)
    with bucket_copy(s3_url) as copy:
        assert versions(copy.local / "lin") == [1, 2] and not any((copy.local / "lin" / "1").iterdir())
    assert copy.report is not None and not copy.report.changed


# ---- serve-repo s3://... --------------------------------------------------------------------------

def ask(url: str, version: str = "") -> np.ndarray:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    tensor = httpclient.InferInput("input", [1, 4], "FP32")
    tensor.set_data_from_numpy(X)
    return client.infer("lin", [tensor], model_version=version).as_numpy("output")


def serves_only(url: str, version: int, other: int) -> bool:
    import tritonclient.http as httpclient

    try:
        client = httpclient.InferenceServerClient(url)
        return client.is_model_ready("lin", str(version)) and not client.is_model_ready("lin", str(other))
    except Exception:
        return False


class ServeRepo:
    """The serve-repo console script on a bucket, stopped by its PID."""

    def __init__(self, url: str, *extra: str) -> None:
        from tritonforge.serving.process import free_port

        self.http = f"127.0.0.1:{free_port()}"
        cmd = [str(Path(sys.executable).parent / "serve-repo"), url, "--http-port", self.http.split(":")[1],
               "--grpc-port", "0", "--metrics-port", "0", "--sync-secs", "0.5", "--repository-poll-secs", "0.5", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    def wait_ready(self) -> str:
        assert wait_for(lambda: any("Ctrl-C to stop" in line for line in self.lines) or self.proc.poll() is not None, 180)
        return next((line for line in self.lines if "Ctrl-C to stop" in line), "".join(self.lines))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        return self.proc.returncode


@pytest.mark.slow
def test_serve_repo_from_a_bucket_answers_and_follows_a_promotion_and_a_rollback(s3_url, repo, tmp_path):
    publish_repository(repo, s3_url)
    server = ServeRepo(s3_url, "--sync-dir", str(tmp_path / "mirror"))
    try:
        banner = server.wait_ready()
        assert "1 models ready: lin" in banner, "".join(server.lines)
        np.testing.assert_allclose(ask(server.http), ANSWER[2])
        assert repo_versions([s3_url, "lin", "--serve", "1", "--why", "roll back"]) == 0
        assert wait_for(lambda: serves_only(server.http, 1, 2), 120), "".join(server.lines[-20:])
        np.testing.assert_allclose(ask(server.http), ANSWER[1])
        assert repo_versions([s3_url, "lin", "--serve", "2", "--why", "promote again"]) == 0
        assert wait_for(lambda: serves_only(server.http, 2, 1), 120), "".join(server.lines[-20:])
        np.testing.assert_allclose(ask(server.http), ANSWER[2])
    finally:
        code = server.stop()
    assert code == 0, "".join(server.lines[-30:])
    assert any(line.startswith(f"serve-repo: following {s3_url} in {tmp_path / 'mirror'}") for line in server.lines)


def test_serve_repo_refuses_a_bucket_with_nothing_published_in_one_line(s3_url):
    done = subprocess.run([str(Path(sys.executable).parent / "serve-repo"), s3_url], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (1, f"serve-repo: {s3_url}: nothing published there (no .tritonforge-publish.json); "
                                                 f"publish a repository with publish-repo first\n")


def test_a_sync_folder_holding_something_else_is_never_written_into(s3_server, s3_url, repo, lin_repos, tmp_path):
    publish_repository(repo, s3_url)
    someone_elses = tmp_path / "their_repository"
    shutil.copytree(lin_repos.v1, someone_elses)
    before = files_of(someone_elses)
    with pytest.raises(FleetError, match=r"their_repository: holds files not synced from s3://[^;]+; give serve-repo an empty or new --sync-dir"):
        BucketMirror(s3_url, someone_elses).sync()
    assert files_of(someone_elses) == before

    BucketMirror(s3_url, tmp_path / "mirror").sync()
    other = f"s3://{s3_server.bucket()}/repo"
    with pytest.raises(FleetError, match=rf"mirror: mirrors {s3_url}, not {other}; give another --sync-dir$"):
        BucketMirror(other, tmp_path / "mirror").sync()


def test_a_publish_cut_short_is_never_taken_half_and_the_next_one_completes_it(s3_server, s3_url, lin_repos, tmp_path, capsys):
    publish_repository(lin_repos.v1, s3_url)
    mirror = BucketMirror(s3_url, tmp_path / "mirror")
    mirror.sync()

    class Cut(Exception):
        pass

    def cut_after_the_first_file(action, rel):
        if action == "put":
            raise Cut(rel)

    with pytest.raises(Cut, match="lin/2/"):
        publish_repository(lin_repos.v2, s3_url, on_step=cut_after_the_first_file)
    mirror.sync()
    assert half_taken(tmp_path / "mirror", lin_repos.v2) == [] and versions(tmp_path / "mirror" / "lin") == [1]
    # The bucket's configs are still pinned: a change through a copy of them is refused, not published.
    assert repo_versions([s3_url, "lin", "--serve", "1"]) == 2
    assert capsys.readouterr().err == (f"repo-versions: {s3_url}: a publish is under way or was cut short (lin configs do not "
                                       f"match the index); let it finish, or publish again, then retry; nothing changed\n")

    report = publish_repository(lin_repos.v2, s3_url)  # the stray object is this tool's: replaced, not refused
    assert {"lin/2/model.onnx", "lin/2/samples.npz", "lin/config.pbtxt"} <= set(report.uploaded)
    mirror.sync()
    assert files_of(tmp_path / "mirror") == files_of(lin_repos.v2)
    assert in_bucket(s3_server, s3_url) == files_of(lin_repos.v2)  # the pinned configs were restored too
    assert not publish_repository(lin_repos.v2, s3_url).changed


def in_bucket(s3_server, url: str) -> dict[str, bytes]:
    from tritonforge.fleet import BucketUrl

    where = BucketUrl.parse(url)
    client = s3_server.client()
    listed = client.list_objects_v2(Bucket=where.bucket, Prefix=where.prefix + "/").get("Contents", [])
    return {where.rel(o["Key"]): client.get_object(Bucket=where.bucket, Key=o["Key"])["Body"].read()
            for o in listed if not where.rel(o["Key"]).startswith(".")}


def test_a_file_that_does_not_match_the_index_waits_and_so_do_the_configs_that_need_it(s3_server, s3_url, repo, tmp_path):
    """As a publish replacing objects looks to a reader: a version whose file is not the indexed one
    is not taken, and a model with no version taken gets no config (the server would load nothing)."""
    from tritonforge.fleet import BucketUrl

    publish_repository(repo, s3_url)
    where = BucketUrl.parse(s3_url)
    for version in ("1", "2"):
        s3_server.client().put_object(Bucket=where.bucket, Key=where.key(f"lin/{version}/model.onnx"), Body=b"half")
    report = BucketMirror(s3_url, tmp_path / "mirror").sync()
    assert {"lin/1", "lin/2", "lin configs"} <= set(report.waiting)
    assert not (tmp_path / "mirror" / "lin" / "config.pbtxt").exists() and versions(tmp_path / "mirror" / "lin") == []
    assert not any(p.name.startswith(".staging") for p in (tmp_path / "mirror").iterdir())  # staging cleaned up


def test_a_staging_folder_left_by_a_stopped_mirror_is_removed_by_the_next_round(s3_url, repo, tmp_path):
    publish_repository(repo, s3_url)
    mirror = BucketMirror(s3_url, tmp_path / "mirror")
    mirror.sync()
    (tmp_path / "mirror" / ".staging-0123456789ab" / "model.onnx").parent.mkdir()
    (tmp_path / "mirror" / ".staging-0123456789ab" / "model.onnx").write_bytes(b"half a download")
    assert mirror.sync().changed == ()
    assert not (tmp_path / "mirror" / ".staging-0123456789ab").exists()
