"""Object-storage fixtures: a real S3-compatible server on loopback, one per session.

``s3_server`` runs moto's standalone server (``python -m moto.server``, from ``moto[server]``) as a
subprocess on 127.0.0.1: boto3 talks to it over real HTTP, as it would to AWS or MinIO. Stopped by
its PID at the end of the session. ``s3_url`` gives each test an empty bucket of its own.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import pytest

# moto accepts any credentials; boto3 needs some, and the tool reads them the standard way (environment).
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    pid: int

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url)

    def bucket(self) -> str:
        """A new, empty bucket."""
        name = f"tf-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


def _wait_until_up(endpoint_url: str, process: subprocess.Popen, seconds: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{endpoint_url}/moto-api/", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto server at {endpoint_url} did not answer within {seconds:.0f} s")


@pytest.fixture(scope="session")
def s3_server():
    from tritonforge.serving.process import free_port

    port = free_port("127.0.0.1")
    # boto3 reads the endpoint from the environment too (AWS_ENDPOINT_URL_S3), as it does credentials:
    # every client in the session, the tool's own included, talks to this server and never to AWS.
    settings = {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}", "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    server = S3Server(f"http://127.0.0.1:{port}", process.pid)
    try:
        _wait_until_up(server.endpoint_url, process)
        yield server
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=20)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_url(s3_server) -> str:
    """``s3://<new bucket>/repo``: where a test publishes."""
    return f"s3://{s3_server.bucket()}/repo"


@dataclass(frozen=True)
class LinRepos:
    """One model ``lin`` (y = x @ W) built by build-repo: ``v1`` holds version 1; ``v2`` is the same
    repository after a rebuild with doubled weights (versions 1 and 2, policy latest)."""

    v1: object
    v2: object


@pytest.fixture(scope="session")
def lin_repos(tmp_path_factory) -> LinRepos:
    """Built once per session (read-only: copy before changing)."""
    import shutil

    import onnx
    from onnx import numpy_helper

    from fixtures_serving import WEIGHTS, onnx_linear
    from tritonforge.builder import BuildOptions, build_repository

    root = tmp_path_factory.mktemp("fleet")
    src, repo = root / "models", root / "building"
    onnx_linear(src / "lin.onnx")
    build_repository(src, repo, BuildOptions())
    shutil.copytree(repo, root / "v1")
    model = onnx.load(str(src / "lin.onnx"))
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(WEIGHTS * 2, "W"))
    onnx.save(model, str(src / "lin.onnx"))
    build_repository(src, repo, BuildOptions())
    shutil.copytree(repo, root / "v2")
    return LinRepos(root / "v1", root / "v2")
