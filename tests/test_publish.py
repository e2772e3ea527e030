"""publish-repo: a repository into a real S3-compatible server (moto's, on loopback), in an order a
polling reader never loads half of, uploading only what changed, refusing what it must not touch.

"Reading the bucket" here is what a Triton polling ``s3://`` does: list the objects, read each
model's configs, load the versions they serve. ``on_step`` lets a test read it after every single
object the publish writes or deletes.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tritonforge.fleet import BucketUrl, FleetError, publish_repository
from tritonforge.fleet.index import INDEX_FILE
from tritonforge.repository import config as config_file
from tritonforge.repository.config import version_policy
from tritonforge.versions import serve_versions


def files_of(repo: Path) -> dict[str, bytes]:
    return {p.relative_to(repo).as_posix(): p.read_bytes() for p in sorted(repo.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(repo).parts)}


def objects(s3_server, url: str) -> dict[str, bytes]:
    where = BucketUrl.parse(url)
    client = s3_server.client()
    listed = client.list_objects_v2(Bucket=where.bucket, Prefix=where.prefix + "/").get("Contents", [])
    return {where.rel(o["Key"]): client.get_object(Bucket=where.bucket, Key=o["Key"])["Body"].read() for o in listed}


def stamps(s3_server, url: str) -> dict[str, tuple]:
    """(ETag, LastModified) of every object: equal stamps mean nothing was written."""
    where = BucketUrl.parse(url)
    listed = s3_server.client().list_objects_v2(Bucket=where.bucket, Prefix=where.prefix + "/").get("Contents", [])
    return {o["Key"]: (o["ETag"], o["LastModified"]) for o in listed}


@pytest.fixture
def repo(lin_repos, tmp_path) -> Path:
    copy = tmp_path / "model_repository"
    shutil.copytree(lin_repos.v2, copy)
    return copy


def test_a_first_publish_puts_every_file_with_its_hash_and_a_second_uploads_nothing(s3_server, s3_url, repo):
    report = publish_repository(repo, s3_url)

    in_bucket = objects(s3_server, s3_url)
    assert {k: v for k, v in in_bucket.items() if k != INDEX_FILE} == files_of(repo)
    where = BucketUrl.parse(s3_url)
    head = s3_server.client().head_object(Bucket=where.bucket, Key=where.key("lin/2/model.onnx"))
    assert head["Metadata"]["sha256"] == hashlib.sha256((repo / "lin/2/model.onnx").read_bytes()).hexdigest()
    assert sorted(report.uploaded) == sorted(files_of(repo)) and report.deleted == ()

    before = stamps(s3_server, s3_url)
    again = publish_repository(repo, s3_url)
    assert (again.uploaded, again.deleted, again.changed) == ((), (), False)
    assert again.unchanged == len(files_of(repo))
    assert stamps(s3_server, s3_url) == before  # not even the index was written again


def served_in_bucket(s3_server, url: str, local: Path) -> list[str]:
    """Read the bucket as a polling Triton does, and name every served version that is not whole."""
    in_bucket = objects(s3_server, url)
    problems = []
    for model in {k.split("/")[0] for k in in_bucket if k.endswith("/config.pbtxt")}:
        on_disk = sorted({int(k.split("/")[1]) for k in in_bucket if k.startswith(f"{model}/") and k.split("/")[1].isdigit()})
        for name in [k for k in in_bucket if k.startswith(f"{model}/") and k.endswith(".pbtxt")]:
            policy = version_policy(config_file.parse(in_bucket[name].decode()))
            for version in policy.served(on_disk):
                wanted = {k: v for k, v in files_of(local).items() if k.startswith(f"{model}/{version}/")}
                got = {k: v for k, v in in_bucket.items() if k.startswith(f"{model}/{version}/")}
                if got != wanted:
                    problems.append(f"{name} serves {model}/{version} with {sorted(got)} of {sorted(wanted)}")
    return problems


def test_a_new_version_is_never_served_before_its_files_are_all_in_the_bucket(s3_server, s3_url, lin_repos, tmp_path):
    """v2 goes up while the bucket serves v1 under policy latest: at every object written, every
    version a config in the bucket serves is whole; configs come after the version, manifest last."""
    publish_repository(lin_repos.v1, s3_url)
    seen, problems = [], []

    def after_each(action, rel):
        seen.append((action, rel))
        problems.extend(f"after {action} {rel}: {p}" for p in served_in_bucket(s3_server, s3_url, lin_repos.v2))

    report = publish_repository(lin_repos.v2, s3_url, on_step=after_each)

    assert problems == []
    puts = [rel for action, rel in seen if action == "put"]
    assert puts[:2] == sorted(puts[:2]) and {p.split("/")[1] for p in puts[:2]} == {"2"}  # the version's files first
    assert report.pinned == ("lin/configs/cpu.pbtxt", "lin/configs/gpu.pbtxt", "lin/config.pbtxt")
    assert puts[-1] == "manifest.json" and seen[-1] == ("index", INDEX_FILE)
    assert set(puts[2:-1]) == {"lin/config.pbtxt", "lin/configs/cpu.pbtxt", "lin/configs/gpu.pbtxt"}
    assert {k: v for k, v in objects(s3_server, s3_url).items() if k != INDEX_FILE} == files_of(lin_repos.v2)


def test_a_promotion_uploads_only_the_configs_and_the_manifest(s3_server, s3_url, repo):
    publish_repository(repo, s3_url)
    serve_versions(repo, "lin", "1", why="roll back")
    report = publish_repository(repo, s3_url)
    assert report.uploaded == ("lin/configs/cpu.pbtxt", "lin/configs/gpu.pbtxt", "lin/config.pbtxt", "manifest.json")
    assert report.pinned == () and report.deleted == ()


def test_keep_removes_old_versions_only_after_the_configs_stop_serving_them(s3_server, s3_url, lin_repos):
    publish_repository(lin_repos.v1, s3_url)
    seen = []
    report = publish_repository(lin_repos.v2, s3_url, keep=1, on_step=lambda action, rel: seen.append((action, rel)))

    assert sorted(report.deleted) == ["lin/1/model.onnx", "lin/1/samples.npz"]
    last_config = max(i for i, (a, rel) in enumerate(seen) if a == "put" and rel.endswith(".pbtxt"))
    first_delete = min(i for i, (a, _) in enumerate(seen) if a == "delete")
    assert last_config < first_delete < seen.index(("put", "manifest.json"))
    assert not any(k.startswith("lin/1/") for k in objects(s3_server, s3_url))


def test_a_served_version_is_kept_whatever_keep_says(s3_server, s3_url, repo):
    serve_versions(repo, "lin", "1", why="pinned")
    report = publish_repository(repo, s3_url, keep=1)
    in_bucket = objects(s3_server, s3_url)
    assert "lin/1/model.onnx" in in_bucket and "lin/2/model.onnx" in in_bucket and report.deleted == ()


# What a publish must refuse, before it writes anything: (what the test does first, the message).
def _foreign(s3_server, url, repo):
    where = BucketUrl.parse(url)
    s3_server.client().put_object(Bucket=where.bucket, Key=where.key("notes.txt"), Body=b"someone else's")


def _foreign_beside_ours(s3_server, url, repo):
    publish_repository(repo, url)
    _foreign(s3_server, url, repo)


def _version_changed_in_place(s3_server, url, repo):
    publish_repository(repo, url)
    (repo / "lin/2/samples.npz").write_bytes(b"rebuilt without a new version")


def _index_not_ours(s3_server, url, repo):
    where = BucketUrl.parse(url)
    s3_server.client().put_object(Bucket=where.bucket, Key=where.key(INDEX_FILE), Body=b'{"tool": "other", "files": {}}')


REFUSALS = [
    (_foreign, r"^s3://[^/]+/repo: holds 1 objects not published by publish-repo \(such as notes.txt\); "
               r"publish to an empty prefix, or remove them; nothing published$"),
    (_foreign_beside_ours, r"^s3://[^/]+/repo: notes.txt was not published by publish-repo; refusing to publish over it$"),
    (_version_changed_in_place, r"^model 'lin' version 2: lin/2/samples.npz differs from the copy published at s3://[^/]+/repo; "
                                r"a published version is never overwritten in place: build a new version; nothing published$"),
    (_index_not_ours, r"^s3://[^/]+/repo/\.tritonforge-publish\.json: was not written by publish-repo; refusing to touch s3://[^/]+/repo$"),
]


@pytest.mark.parametrize("setup, message", REFUSALS, ids=[s.__name__.strip("_") for s, _ in REFUSALS])
def test_a_publish_that_would_clobber_is_refused_in_one_line_and_writes_nothing(s3_server, s3_url, repo, setup, message):
    setup(s3_server, s3_url, repo)
    before = stamps(s3_server, s3_url)
    with pytest.raises(FleetError, match=message):
        publish_repository(repo, s3_url)
    assert stamps(s3_server, s3_url) == before


BAD_ARGUMENTS = [
    ("s3://Bad_Bucket/x", {}, "s3://Bad_Bucket/x: 'Bad_Bucket' is not a valid bucket name (3-63 of a-z, 0-9, '.', '-')"),
    ("s3://bucket/a/../b", {}, "s3://bucket/a/../b: the prefix 'a/../b' has an empty, '.' or '..' part"),
    ("/tmp/somewhere", {}, "/tmp/somewhere: not an object-storage URL (say s3://bucket/prefix)"),
    ("s3://bucket/x", {"keep": 0}, "--keep 0: keep at least 1 version of each model"),
]


@pytest.mark.parametrize("url, options, message", BAD_ARGUMENTS, ids=[m.split(":")[0] or u for u, _, m in BAD_ARGUMENTS])
def test_bad_arguments_are_refused_in_one_line(repo, url, options, message):
    with pytest.raises(FleetError) as refused:
        publish_repository(repo, url, **options)
    assert str(refused.value) == message


def test_a_folder_that_is_no_repository_is_refused(tmp_path, s3_url):
    (tmp_path / "lin").mkdir()
    with pytest.raises(FleetError, match=r"no manifest.json\); build it with build-repo first$"):
        publish_repository(tmp_path, s3_url)


def _script(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_the_console_script_shows_progress_and_a_second_run_publishes_nothing(s3_server, s3_url, repo):
    argv = [_script("publish-repo"), str(repo), s3_url, "--endpoint-url", s3_server.endpoint_url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"[1/{len(files_of(repo))}] lin/1/model.onnx" in done.stderr
    assert done.stdout.startswith(f"publish-repo: {s3_url}: uploaded {len(files_of(repo))} files (")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"publish-repo: {s3_url}: nothing to publish ({len(files_of(repo))} files already published, unchanged)\n"


def test_without_credentials_the_script_says_how_to_give_them(s3_server, s3_url, repo, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION="us-east-1")
    done = subprocess.run([_script("publish-repo"), str(repo), s3_url, "--endpoint-url", s3_server.endpoint_url],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2
    assert done.stderr == (f"publish-repo: {s3_url}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                           f"or AWS_PROFILE); none are taken on the command line\n")


def test_a_large_file_reports_its_progress_every_tenth():
    import io

    from tritonforge.fleet.progress import LARGE, Progress

    out = io.StringIO()
    progress = Progress(files=2, total_bytes=LARGE * 2 + 10, stream=out)
    assert progress.start("lin/1/labels.txt", 10) is None  # small: one line, no byte callback
    callback = progress.start("lin/2/model.onnx", LARGE * 2)
    for _ in range(8):
        callback(LARGE // 4)  # boto3 reports each part as it is sent
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["[1/2] lin/1/labels.txt 10 B", "[2/2] lin/2/model.onnx 16.0 MB"]
    assert [line.split(": ")[1].split("%")[0] for line in lines[2:]] == ["10", "20", "30", "50", "60", "70", "80", "100"]
    assert lines[-1] == "    lin/2/model.onnx: 100% (16.0 MB of 16.0 MB in all)"
