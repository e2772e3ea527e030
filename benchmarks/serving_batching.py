"""Dynamic batching on vs off: throughput and p50/p99 latency over gRPC at 32 concurrent requests.

    python benchmarks/serving_batching.py --repo model_repository --model torch_cnn

Serves two copies of one built model from a scratch repository (the original is not touched):
``<model>__batching`` with the config as built (dynamic batching on) and ``<model>__single``
without ``dynamic_batching``; both with one CPU instance, so that batching is the only
difference. Each is driven for ``--seconds`` by one client keeping ``--concurrency`` requests
of one sample row in flight, in the same run, alternating twice, and the ratios are printed.
On a small shared machine the absolute numbers mean little; compare the ratios.
Without ``--repo`` the examples are trained and built first (a few minutes).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from google.protobuf import text_format

ROOT = Path(__file__).resolve().parents[1]


def _scratch_repo(repo: Path, model: str, dst: Path) -> dict[str, str]:
    from tritonclient.grpc import model_config_pb2 as mc

    from tritonforge.serving.server import read_config

    src = repo / model
    version = max((p.name for p in src.iterdir() if p.name.isdigit()), key=int)
    names = {}
    for label, batching in (("on", True), ("off", False)):
        name = f"{model}__{'batching' if batching else 'single'}"
        folder = dst / name
        shutil.copytree(src / version, folder / "1")
        for extra in ("labels.txt", "warmup"):
            if (src / extra).exists():
                (shutil.copytree if (src / extra).is_dir() else shutil.copy2)(src / extra, folder / extra)
        config = read_config(src)
        config.name = name
        del config.instance_group[:]
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
        if batching and not config.HasField("dynamic_batching"):
            config.dynamic_batching.max_queue_delay_microseconds = 1000
        if not batching:
            config.ClearField("dynamic_batching")
        (folder / "config.pbtxt").write_text(text_format.MessageToString(config))
        names[label] = name
    return names


def _drive(client, model: str, inputs, seconds: float, concurrency: int) -> dict:
    """Keep ``concurrency`` requests in flight for ``seconds``; return throughput and latencies."""
    slots = threading.BoundedSemaphore(concurrency)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def done(start):
        def callback(result, error):
            with lock:
                if error is not None:
                    errors.append(str(error))
                else:
                    latencies.append(time.perf_counter() - start)
            slots.release()
        return callback

    started = time.perf_counter()
    deadline = started + seconds
    sent = 0
    while time.perf_counter() < deadline and sent < 10_000_000:
        if not slots.acquire(timeout=5):
            raise RuntimeError(f"{model}: no answer for 5 s")
        client.async_infer(model, inputs, done(time.perf_counter()))
        sent += 1
    for _ in range(concurrency):  # drain: every slot back, bounded
        if not slots.acquire(timeout=30):
            raise RuntimeError(f"{model}: requests still in flight 30 s after the run")
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{model}: {len(errors)} failed requests, first: {errors[0]}")
    lat = np.array(latencies) * 1000
    return {"throughput": len(latencies) / elapsed, "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "requests": len(latencies)}


def _one_row_inputs(repo: Path, model: str, config):
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc import model_config_pb2 as mc

    from tritonforge.repository import kserve_type, latest_samples, read_samples
    from tritonforge.serving.check import _as_wire

    samples = read_samples(latest_samples(repo / model))
    tensors = []
    for io in config.input:
        config_type = mc.DataType.Name(io.data_type)
        row = _as_wire(samples.inputs[io.name][:1], config_type)
        tensor = grpcclient.InferInput(io.name, list(row.shape), kserve_type(config_type))
        tensor.set_data_from_numpy(row)
        tensors.append(tensor)
    return tensors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=None, help="a built repository (default: build the examples)")
    parser.add_argument("--model", default="torch_cnn")
    parser.add_argument("--seconds", type=float, default=8.0, help="per run; each mode runs twice")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)

    from tritonforge.serving.server import read_config, serve

    with tempfile.TemporaryDirectory(prefix="tritonforge-bench-") as tmp:
        tmp = Path(tmp)
        repo = args.repo
        if repo is None:
            sys.path.insert(0, str(ROOT / "examples"))
            from tritonforge.builder import BuildOptions, build_repository
            from train_models import train_examples

            repo = tmp / "built"
            build_repository(train_examples(tmp / "models"), repo, BuildOptions(allow_pickle=True))
        if not (repo / args.model / "config.pbtxt").is_file():
            print(f"serving_batching: {repo / args.model}: no such model", file=sys.stderr)
            return 2
        config = read_config(repo / args.model)
        if config.max_batch_size <= 0:
            print(f"serving_batching: model '{args.model}' has max_batch_size 0: it cannot batch", file=sys.stderr)
            return 2
        names = _scratch_repo(repo, args.model, tmp / "bench_repo")
        inputs = _one_row_inputs(repo, args.model, config)
        with serve(tmp / "bench_repo", control_mode="none") as server:
            client = server.grpc_client()
            results: dict[str, list[dict]] = {"on": [], "off": []}
            for label in ("on", "off"):  # warm-up, not counted
                _drive(client, names[label], inputs, 1.0, args.concurrency)
            for _ in range(2):
                for label in ("on", "off"):
                    results[label].append(_drive(client, names[label], inputs, args.seconds, args.concurrency))
            stats = client.get_inference_statistics(names["on"]).model_stats[0]
            mean_batch = stats.inference_count / max(stats.execution_count, 1)

    def merged(label):
        runs = results[label]
        return {k: float(np.mean([r[k] for r in runs])) for k in ("throughput", "p50", "p99")}

    on, off = merged("on"), merged("off")
    print(f"model {args.model}, gRPC, {args.concurrency} concurrent requests of 1 row, 1 CPU instance, "
          f"{args.seconds:g} s x 2 per mode")
    print(f"{'dynamic batching':<18}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for label, r in (("on", on), ("off", off)):
        print(f"{label:<18}{r['throughput']:>10.1f}{r['p50']:>10.2f}{r['p99']:>10.2f}")
    print(f"mean requests per execution with batching on: {mean_batch:.1f}")
    print(f"ratio on/off: throughput x{on['throughput'] / off['throughput']:.2f}, "
          f"p50 x{on['p50'] / off['p50']:.2f}, p99 x{on['p99'] / off['p99']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
