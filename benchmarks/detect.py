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
    import onnxruntime as ort

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

    session = ort.InferenceSession(nms_graph(classes=3).SerializeToString(), _one_thread(ort), providers=["CPUExecutionProvider"])
    same = True
    for head, size in heads:  # the graph keeps the boxes the Python step keeps (before mapping back)
        boxes, scores, classes = session.run(None, {"head": head})
        ours = post.detections(head, size, post_spec)
        count = int(ours["COUNT"][0, 0])
        same &= len(scores) == count and classes.astype(np.int32).tolist() == ours["CLASSES"][0, :count].tolist()
        same &= bool(np.allclose(scores, ours["SCORES"][0, :count]))
        mapped = post.scale_boxes(boxes.astype(np.float32), size[0], post_spec)
        same &= bool(np.abs(mapped - ours["BOXES"][0, :count]).max(initial=0) < 1e-3)
    started = time.perf_counter()
    for _ in range(repeats):
        for head, _ in heads:
            session.run(None, {"head": head})
    onnx_us = (time.perf_counter() - started) / (repeats * len(heads)) * 1e6
    costs = {"python postprocess (conf, NMS, mapping), us/image": python_us,
             "ORT graph (best class, offset boxes, NonMaxSuppression, gather), us/image": onnx_us}
    print(f"the graph keeps the Python step's boxes on every fixture image: {'yes' if same else 'NO'}", flush=True)
    return costs


def _one_thread(ort):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return options


def nms_graph(classes: int, conf: float = 0.25, iou: float = 0.7, max_det: int = 300):
    """ultralytics' NMS as an ONNX graph on a v8 head [1, 4 + classes, anchors]: the best class per
    anchor, boxes xyxy offset by class * 7680 so one NonMaxSuppression class does per-class NMS,
    then the kept boxes (not offset), scores and classes, best first."""
    from onnx import TensorProto, helper

    def const(name, dtype, values):
        return helper.make_tensor(name, dtype, [len(values)], values)

    nodes = [
        helper.make_node("Slice", ["head", "i0", "i2", "ax1"], ["xy"]),
        helper.make_node("Slice", ["head", "i2", "i4", "ax1"], ["wh"]),
        helper.make_node("Slice", ["head", "i4", "iend", "ax1"], ["cls"]),
        helper.make_node("Div", ["wh", "two"], ["half"]),
        helper.make_node("Sub", ["xy", "half"], ["xy1"]),
        helper.make_node("Add", ["xy", "half"], ["xy2"]),
        helper.make_node("Concat", ["xy1", "xy2"], ["xyxy"], axis=1),  # [1, 4, A]
        helper.make_node("ReduceMax", ["cls", "ax1"], ["score"], keepdims=1),  # [1, 1, A]
        helper.make_node("ArgMax", ["cls"], ["best"], axis=1, keepdims=1),
        helper.make_node("Cast", ["best"], ["bestf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["bestf", "max_wh"], ["offset"]),
        helper.make_node("Add", ["xyxy", "offset"], ["shifted"]),
        helper.make_node("Transpose", ["shifted"], ["nms_boxes"], perm=[0, 2, 1]),  # [1, A, 4]
        helper.make_node("NonMaxSuppression", ["nms_boxes", "score", "limit", "iou", "conf"], ["selected"]),
        helper.make_node("Gather", ["selected", "i2s"], ["picked"], axis=1),  # [K]: anchor indices, best first
        helper.make_node("Squeeze", ["xyxy", "i0"], ["xyxy0"]),
        helper.make_node("Gather", ["xyxy0", "picked"], ["boxes_t"], axis=1),
        helper.make_node("Transpose", ["boxes_t"], ["boxes"], perm=[1, 0]),
        helper.make_node("Reshape", ["score", "flat"], ["score0"]),
        helper.make_node("Gather", ["score0", "picked"], ["scores"], axis=0),
        helper.make_node("Reshape", ["best", "flat"], ["best0"]),
        helper.make_node("Gather", ["best0", "picked"], ["classes"], axis=0),
    ]
    consts = [const("i0", TensorProto.INT64, [0]), const("i2", TensorProto.INT64, [2]), const("i4", TensorProto.INT64, [4]),
              const("iend", TensorProto.INT64, [4 + classes]), const("ax1", TensorProto.INT64, [1]),
              helper.make_tensor("i2s", TensorProto.INT64, [], [2]), const("flat", TensorProto.INT64, [-1]),
              helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]), helper.make_tensor("max_wh", TensorProto.FLOAT, [], [7680.0]),
              const("limit", TensorProto.INT64, [max_det]), const("iou", TensorProto.FLOAT, [iou]),
              const("conf", TensorProto.FLOAT, [conf])]
    graph = helper.make_graph(nodes, "ultralytics_nms", [helper.make_tensor_value_info("head", TensorProto.FLOAT, [1, 4 + classes, None])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [None, 4]),
                               helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None]),
                               helper.make_tensor_value_info("classes", TensorProto.INT64, [None])], consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])



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
