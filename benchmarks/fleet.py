"""A fleet on one machine: N serve-repo replicas following one bucket, wrk against every replica,
a new version published and promoted under that load.

    python benchmarks/fleet.py                      # starts its own S3 server (moto, loopback)
    python benchmarks/fleet.py --endpoint-url http://127.0.0.1:9000 --bucket models   # MinIO, say

What it reports: requests and failed requests (the goal is 0), the seconds from the promotion
(repo-versions against the bucket) until every replica answers with the new version, and until no
replica serves the old one any more. The model is tiny (y = x @ W, built by build-repo twice, the
second time with doubled weights), so the figures are those of the sync and reload path, not of a
model. tests/test_fleet_rollout.py runs the same scenario, shorter.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
X = np.ones((1, 4), dtype=np.float32)
WEIGHTS = np.arange(12, dtype=np.float32).reshape(4, 3) / 10.0  # tests/fixtures_serving.py's linear model
ANSWER = {1: X @ WEIGHTS, 2: X @ (WEIGHTS * 2)}


def wait_for(condition, seconds: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


class Replica:
    """``serve-repo s3://...`` as a subprocess with its own sync folder; stopped by its PID."""

    def __init__(self, url: str, sync_dir: Path, *, sync_secs: float = 0.5, poll_secs: float = 0.5) -> None:
        from tritonforge.serving.process import free_port

        self.http = f"127.0.0.1:{free_port()}"
        cmd = [str(Path(sys.executable).parent / "serve-repo"), url, "--sync-dir", str(sync_dir),
               "--http-port", self.http.split(":")[1], "--grpc-port", "0", "--metrics-port", "0",
               "--sync-secs", f"{sync_secs:g}", "--repository-poll-secs", f"{poll_secs:g}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    def ready(self) -> bool:
        return any("Ctrl-C to stop" in line for line in self.lines)

    def answers(self, version: int) -> bool:
        """Whether the unversioned endpoint (what clients call) answers like ``version``."""
        import tritonclient.http as httpclient

        try:
            tensor = httpclient.InferInput("input", [1, 4], "FP32")
            tensor.set_data_from_numpy(X)
            got = httpclient.InferenceServerClient(self.http).infer("lin", [tensor]).as_numpy("output")
            return bool(np.allclose(got, ANSWER[version]))
        except Exception:
            return False

    def serves(self, version: int) -> bool:
        import tritonclient.http as httpclient

        try:
            return httpclient.InferenceServerClient(self.http).is_model_ready("lin", str(version))
        except Exception:
            return True  # unknown counts as still serving: "gone" must be seen, not assumed

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._reader.join(timeout=5)
        return self.proc.returncode


class Load:
    """wrk against each replica's unversioned endpoint in rounds of ``round_s`` until stopped (the
    round-robin in front of a fleet spreads requests evenly; one wrk per replica does the same)."""

    def __init__(self, replicas: list[Replica], connections: int, round_s: float = 2.0, limit_s: float = 600.0) -> None:
        self.rounds: dict[str, list] = {r.http: [] for r in replicas}
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(r.http, connections, round_s, limit_s)) for r in replicas]

    def _loop(self, url: str, connections: int, round_s: float, limit_s: float) -> None:
        from tritonforge.loadtests.native import run_wrk

        deadline = time.monotonic() + limit_s  # bounded whatever happens
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                self.rounds[url].append(run_wrk(url, "lin", {"input": X}, connections=connections, seconds=round_s))
            except Exception as exc:  # wrk itself failing is a defect of the setup, reported
                self.problems.append(f"{url}: {exc}")
                return

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def requests(self, url: str | None = None) -> int:
        return sum(r.requests for u, rounds in self.rounds.items() if url in (None, u) for r in rounds)

    def failures(self, url: str | None = None) -> int:
        return sum(r.errors for u, rounds in self.rounds.items() if url in (None, u) for r in rounds)


@dataclass
class Rollout:
    replicas: int
    connections_per_replica: int
    requests: int = 0
    failed: int = 0
    requests_per_replica: list[int] = field(default_factory=list)
    failed_per_replica: list[int] = field(default_factory=list)
    publish_s: float = 0.0  # publish-repo of the new version (not served yet)
    promote_s: float = 0.0  # repo-versions against the bucket
    all_new_s: float | None = None  # promotion -> every replica answers with the new version
    old_gone_s: float | None = None  # promotion -> no replica serves the old version
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        def secs(value):
            return "never (within the limit)" if value is None else f"{value:.1f} s"

        return [
            f"replicas: {self.replicas}, wrk with {self.connections_per_replica} connections on each",
            f"requests: {self.requests} ({', '.join(map(str, self.requests_per_replica))}), failed: {self.failed}",
            f"publish of the new version: {self.publish_s:.1f} s; promotion in the bucket: {self.promote_s:.1f} s",
            f"every replica answers with the new version: {secs(self.all_new_s)} after the promotion",
            f"no replica serves the old version: {secs(self.old_gone_s)} after the promotion",
        ]


def rollout(v1_repo: Path, v2_repo: Path, url: str, workdir: Path, *, replicas: int = 3, connections: int = 2,
            before_s: float = 2.0, after_s: float = 2.0, limit_s: float = 180.0) -> Rollout:
    """``v1_repo`` (version 1) is published and served by ``replicas`` followers of ``url``; under
    load, ``v2_repo`` (versions 1 and 2) is published pinned to 1, then 2 is promoted in the bucket."""
    from tritonforge.fleet import bucket_copy, publish_repository
    from tritonforge.versions import serve_versions

    result = Rollout(replicas, connections)
    publisher = workdir / "publisher"
    shutil.copytree(v1_repo, publisher)
    publish_repository(publisher, url)
    fleet = [Replica(url, workdir / f"replica-{i}") for i in range(replicas)]
    try:
        if not wait_for(lambda: all(r.ready() or r.proc.poll() is not None for r in fleet), limit_s):
            raise RuntimeError("replicas did not become ready")
        for r in fleet:
            if not r.ready():
                raise RuntimeError(f"replica {r.http} failed to start:\n{''.join(r.lines[-20:])}")
        if not all(r.answers(1) for r in fleet):
            raise RuntimeError("a replica does not answer with version 1")
        with Load(fleet, connections, limit_s=limit_s + 120) as load:
            wait_for(lambda: all(load.requests(r.http) > 0 for r in fleet) or load.problems, 60)
            time.sleep(before_s)
            # The new version goes up beside the old, not served yet: what a build does before a canary.
            shutil.rmtree(publisher)
            shutil.copytree(v2_repo, publisher)
            serve_versions(publisher, "lin", "1", why="publish 2 before promoting it")
            started = time.monotonic()
            publish_repository(publisher, url)
            result.publish_s = time.monotonic() - started
            started = time.monotonic()
            with bucket_copy(url) as copy:
                serve_versions(copy.local, "lin", "2", why="promote 2 across the fleet")
            result.promote_s = time.monotonic() - started
            promoted = time.monotonic()
            pending_new, pending_old = set(range(replicas)), set(range(replicas))
            while (pending_new or pending_old) and time.monotonic() - promoted < limit_s:
                pending_new -= {i for i in pending_new if fleet[i].answers(2)}
                if not pending_new and result.all_new_s is None:
                    result.all_new_s = time.monotonic() - promoted
                pending_old -= {i for i in pending_old if not fleet[i].serves(1)}
                if not pending_old and result.old_gone_s is None:
                    result.old_gone_s = time.monotonic() - promoted
                time.sleep(0.1)
            during = load.requests()
            wait_for(lambda: load.requests() > during, 60)  # the load goes on after the switch
            time.sleep(after_s)
        result.requests_per_replica = [load.requests(r.http) for r in fleet]
        result.failed_per_replica = [load.failures(r.http) for r in fleet]
        result.requests, result.failed = sum(result.requests_per_replica), sum(result.failed_per_replica)
        result.problems = list(load.problems)
    finally:
        for r in fleet:
            r.stop()
    return result


def build_lin(root: Path) -> tuple[Path, Path]:
    """lin built once (version 1) and rebuilt with doubled weights (versions 1 and 2)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tritonforge.builder import BuildOptions, build_repository

    src, repo = root / "models", root / "building"
    src.mkdir(parents=True)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "W"], ["output"])], "linear", [x], [y],
                              [numpy_helper.from_array(WEIGHTS, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(src / "lin.onnx"))
    build_repository(src, repo, BuildOptions())
    shutil.copytree(repo, root / "v1")
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(WEIGHTS * 2, "W"))
    onnx.save(model, str(src / "lin.onnx"))
    build_repository(src, repo, BuildOptions())
    shutil.copytree(repo, root / "v2")
    return root / "v1", root / "v2"


def start_moto() -> tuple[subprocess.Popen, str]:
    from tritonforge.serving.process import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    import urllib.request

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                return True
        except OSError:
            return False

    if not wait_for(up, 60, 0.2):
        proc.kill()
        raise RuntimeError("moto server did not start")
    return proc, endpoint


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint-url", default=None, help="an S3-compatible server (default: start moto on loopback)")
    p.add_argument("--bucket", default=None, help="an existing bucket (default: a new one)")
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--connections", type=int, default=8, help="wrk connections per replica")
    p.add_argument("--before", type=float, default=5.0, help="seconds of load before the publish")
    p.add_argument("--after", type=float, default=5.0, help="seconds of load after the switch")
    p.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = p.parse_args(argv)
    moto = None
    if args.endpoint_url is None:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        moto, args.endpoint_url = start_moto()
    os.environ["AWS_ENDPOINT_URL_S3"] = args.endpoint_url  # boto3's standard setting: replicas inherit it
    try:
        import boto3

        bucket = args.bucket or f"fleet-{uuid.uuid4().hex[:10]}"
        if args.bucket is None:
            boto3.client("s3").create_bucket(Bucket=bucket)
        with tempfile.TemporaryDirectory(prefix="tritonforge-fleet-") as scratch:
            v1, v2 = build_lin(Path(scratch) / "build")
            load_before = os.getloadavg()[0]
            result = rollout(v1, v2, f"s3://{bucket}/fleet-{uuid.uuid4().hex[:6]}", Path(scratch), replicas=args.replicas,
                             connections=args.connections, before_s=args.before, after_s=args.after)
        print("\n".join(result.lines()))
        print(f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; {os.cpu_count()} cores")
        if args.json:
            args.json.write_text(json.dumps(asdict(result), indent=2))
        return 0 if result.failed == 0 and not result.problems else 1
    finally:
        if moto is not None:
            os.kill(moto.pid, signal.SIGTERM)
            moto.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
