"""The detection ensemble against its bare detector on serve-repo, and where NMS runs.

    python benchmarks/detect.py                   # 3 rounds of 4 s a figure, 8 clients
    python benchmarks/detect.py --out docs/DETECTION_BENCHMARK.md

Model: the committed ultralytics fixture (tests/fixtures/yolo/shapes_dynamic.onnx, a reduced-width
yolov8n at 160x160), built by build-repo with ``shapes_detect`` around it. Load: ``--clients``
threads of tritonclient, one image a request, for ``--seconds`` a figure; each round runs every
figure once, in the opposite order to the round before, and a cell is the median round.

Figures, in images/s, over HTTP and gRPC:
- ``shapes_detect`` fed the fixture's JPEG/PNG bytes (decode, letterbox, detector, NMS, boxes back);
- ``shapes`` fed the same images already letterboxed (float32 [1, 3, 160, 160]): the issue's goal
  is ensemble >= 0.6x bare.
And, in-process, the cost per image of the postprocess (the Python step's NMS) against ONNX
Runtime's ``NonMaxSuppression`` op on the same head outputs (a graph appended to the detector's
output: what NMS in the backend would cost; it is multi-label per class, not ultralytics' best
class per anchor, so it would not answer the same boxes without more graph).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fixtures_detect import YOLO_FIXTURE, add_detect_ensemble  # noqa: E402

IMAGES = sorted(p for p in (YOLO_FIXTURE / "images").iterdir() if p.suffix in (".jpg", ".png"))


def build(workdir: Path) -> Path:
    import shutil

    from tritonforge.builder import BuildOptions, build_repository

    models = workdir / "models"
    models.mkdir()
    shutil.copyfile(YOLO_FIXTURE / "shapes_dynamic.onnx", models / "shapes.onnx")
    repo = workdir / "repo"
    failed = [f"{r.name}: {r.reason}" for r in build_repository(models, repo, BuildOptions(device="cpu", max_batch_size=8))
              if r.status.name != "OK"]
    if failed:
        raise SystemExit("build failed: " + "; ".join(failed))
    add_detect_ensemble(repo, "shapes", models / "shapes.onnx")
    return repo


def requests(protocol: str):
    """(model, list of (input name, array, datatype) per request) for each figure."""
    from tritonforge.ensembles.library import load_template

    letterbox = load_template("letterbox")
    spec = {"output": "images", "dtype": "float32", "height": 160, "width": 160, "pad": 114, "size_output": "IMAGE_SIZE",
            "max_bytes": 32 << 20, "max_pixels": 4096 * 4096}
    raw = [p.read_bytes() for p in IMAGES]
    tensors = [letterbox.images_to_input([data], spec)["images"] for data in raw]
    return {"shapes_detect": [("RAW", np.array([[data]], dtype=object), "BYTES") for data in raw],
            "shapes": [("images", t, "FP32") for t in tensors]}


def load(server, protocol: str, model: str, bodies, clients: int, seconds: float) -> float:
    """Images answered per second by ``clients`` threads sending one image a request."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    module = httpclient if protocol == "http" else grpcclient
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(slot: int) -> None:
        connection = server.http_client() if protocol == "http" else server.grpc_client()
        i = slot
        while time.monotonic() < stop:
            name, value, datatype = bodies[i % len(bodies)]
            tensor = module.InferInput(name, list(value.shape), datatype)
            tensor.set_data_from_numpy(value)
            connection.infer(model, [tensor])
            done[slot] += 1
            i += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(s,)) for s in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - started)


def nms_costs(repo: Path, repeats: int = 200) -> dict[str, float]:
    """Microseconds per image: the Python step's postprocess, and ORT's NonMaxSuppression graph."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from tritonforge.ensembles.library import load_template

    post = load_template("detect_post")
    letterbox = load_template("letterbox")
    spec = {"output": "images", "dtype": "float32", "height": 160, "width": 160, "pad": 114, "size_output": "IMAGE_SIZE",
            "max_bytes": 32 << 20, "max_pixels": 4096 * 4096}
    detector = ort.InferenceSession(str(repo / "shapes" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    heads = []
    for path in IMAGES:
        features = letterbox.images_to_input([path.read_bytes()], spec)
        heads.append((detector.run(None, {"images": features["images"]})[0], features["IMAGE_SIZE"]))
    post_spec = {"input": "output0", "size_input": "IMAGE_SIZE", "layout": "v8", "names": ["square", "circle", "triangle"],
                 "height": 160, "width": 160, "conf": 0.25, "iou": 0.7, "max_det": 300}
    started = time.perf_counter()
    for _ in range(repeats):
        for head, size in heads:
            post.detections(head, size, post_spec)
    python_us = (time.perf_counter() - started) / (repeats * len(heads)) * 1e6

    # head [1, 7, A] -> boxes [1, A, 4] (cx, cy, w, h: center_point_box=1), scores [1, 3, A] -> NonMaxSuppression
    nodes = [helper.make_node("Slice", ["head", "s0", "s4", "ax"], ["xywh"]),
             helper.make_node("Transpose", ["xywh"], ["boxes"], perm=[0, 2, 1]),
             helper.make_node("Slice", ["head", "s4", "s7", "ax"], ["scores"]),
             helper.make_node("NonMaxSuppression", ["boxes", "scores", "limit", "iou", "conf"], ["selected"], center_point_box=1)]
    consts = [helper.make_tensor("s0", TensorProto.INT64, [1], [0]), helper.make_tensor("s4", TensorProto.INT64, [1], [4]),
              helper.make_tensor("s7", TensorProto.INT64, [1], [7]), helper.make_tensor("ax", TensorProto.INT64, [1], [1]),
              helper.make_tensor("limit", TensorProto.INT64, [1], [300]), helper.make_tensor("iou", TensorProto.FLOAT, [1], [0.7]),
              helper.make_tensor("conf", TensorProto.FLOAT, [1], [0.25])]
    graph = helper.make_graph(nodes, "nms", [helper.make_tensor_value_info("head", TensorProto.FLOAT, [1, 7, None])],
                              [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    started = time.perf_counter()
    for _ in range(repeats):
        for head, _ in heads:
            session.run(None, {"head": head})
    onnx_us = (time.perf_counter() - started) / (repeats * len(heads)) * 1e6
    return {"python postprocess (conf, NMS, mapping), us/image": python_us, "ORT NonMaxSuppression op, us/image": onnx_us}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    args = parser.parse_args(argv)

    from tritonforge.serving.server import serve

    with tempfile.TemporaryDirectory() as tmp:
        repo = build(Path(tmp))
        costs = nms_costs(repo)
        figures: dict[tuple[str, str], list[float]] = {}
        with serve(repo, control_mode="none", ready_timeout=600) as server:
            order = [(p, m) for p in ("http", "grpc") for m in ("shapes_detect", "shapes")]
            for round_ in range(args.rounds):
                for protocol, model in (order if round_ % 2 == 0 else order[::-1]):
                    rate = load(server, protocol, model, requests(protocol)[model], args.clients, args.seconds)
                    figures.setdefault((protocol, model), []).append(rate)
                    print(f"round {round_ + 1}: {protocol} {model}: {rate:.1f} images/s", flush=True)
    lines = [f"Machine: {platform.machine()}, {__import__('os').cpu_count()} CPUs (shared); {args.clients} clients, "
             f"{args.rounds} rounds of {args.seconds:g} s, one image a request.", "",
             "| protocol | shapes_detect (JPEG/PNG bytes), images/s | shapes (letterboxed tensors), images/s | ratio |",
             "| --- | --- | --- | --- |"]
    for protocol in ("http", "grpc"):
        ensemble = statistics.median(figures[(protocol, "shapes_detect")])
        bare = statistics.median(figures[(protocol, "shapes")])
        lines.append(f"| {protocol} | {ensemble:.1f} | {bare:.1f} | {ensemble / bare:.2f}x |")
    lines += ["", "| where NMS runs | cost |", "| --- | --- |"] + [f"| {k} | {v:.0f} |" for k, v in costs.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
