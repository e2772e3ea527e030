"""Fused pipelines (issue 30) against their Python-step ensembles and their bare models, for the
image classifier, the detector and the text classifier, on serve-repo and on Triton's C++ ONNX
Runtime backend, over HTTP and gRPC, in one run.

    python benchmarks/fused.py                                         # serve-repo only
    python benchmarks/fused.py --backend-directory ../shared/reference-backends --out docs/FUSED_BENCHMARK.md

One repository, built by build-repo with ``--fuse`` (device cpu), holds every figure's entry:
- image: ``digits_cnn`` (examples/train_models.py's Keras CNN; float32 [1, 28, 28, 1] in),
  ``digits_cnn_ensemble`` (a PNG's bytes as BYTES: the Python image step, the model, Triton's
  classification) and ``digits_cnn_ensemble_fused`` (the PNG's bytes as UINT8 [n]: DecodeImage of
  onnxruntime-extensions, the resize and the model in one graph); examples/inputs/digit_7.png;
- detect: ``shapes`` (tests/fixtures/yolo's dynamic export; the image letterboxed by the client,
  float32 [1, 3, 160, 160], and no NMS), ``shapes_detect`` (the JPEG's bytes: letterbox step,
  detector, NMS step) and ``shapes_detect_fused`` (the decoded RGB pixels, uint8 [180, 320, 3]:
  letterbox, detector and NMS in one graph of standard operators); tests/fixtures/yolo/images/wide.jpg;
- text: benchmarks/fused_text.py's byte-level BPE classifier (token ids; strings; strings), one text.
Each fused entry is fed what its clients send it; the bare model what it needs after the client
did the steps itself (the ensemble's and the fused entry's rate include that work, the bare
model's does not).

Load, as benchmarks/fused_text.py and speed.py: ``wrk`` (HTTP, KServe v2 binary tensors) and
``h2load`` (gRPC), one thread, 32 connections, one request = one image or text. Each round loads
every figure once, in the opposite order to the round before; a cell is the figure's median
round, a ratio the median of the rounds' ratios with their range. The C++ backend's figures need
``--backend-directory`` (a folder with Triton's ``onnxruntime`` backend); the Python steps of the
ensembles run on the wheel's Python backend there too, and onnxruntime-extensions' library is on
the server's LD_LIBRARY_PATH as deploy/triton puts it on the NGC image.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "examples"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fused_text  # noqa: E402
from fused_text import ServeRepoBoth, measure  # noqa: E402
from harness import ReferenceServer  # noqa: E402
from speed import CONNECTIONS, fmt, median_figure, ratio  # noqa: E402

IMAGE = ROOT / "examples" / "inputs" / "digit_7.png"
PHOTO = ROOT / "tests" / "fixtures" / "yolo" / "images" / "wide.jpg"
PIPELINES = {  # pipeline: (bare model, Python-step ensemble, fused entry)
    "image (digits_cnn)": ("digits_cnn", "digits_cnn_ensemble", "digits_cnn_ensemble_fused"),
    "detect (shapes)": ("shapes", "shapes_detect", "shapes_detect_fused"),
    "text (reviews_bpe)": (fused_text.BARE, fused_text.ENSEMBLE, fused_text.FUSED),
}
KINDS = ("bare", "ensemble", "fused")


def build(workdir: Path) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """One repository with every pipeline's three entries, and each entry's request."""
    from train_models import keras_sequential_cnn
    from tritonforge.builder import BuildOptions, build_repository

    models = workdir / "models"
    models.mkdir()
    keras_sequential_cnn(models)
    shutil.copyfile(ROOT / "tests" / "fixtures" / "yolo" / "shapes_dynamic.onnx", models / "shapes.onnx")
    repo = workdir / "repo"
    results = build_repository(models, repo, BuildOptions(device="cpu", fuse=True))
    failed = [f"{r.name}: {r.status.name} {r.reason}" for r in results if r.status.name != "OK"]
    if failed:
        raise SystemExit("build failed or not fused: " + "; ".join(failed))
    (workdir / "text").mkdir()
    text_repo, requests = fused_text.build(workdir / "text", rows=1)  # its own build, its entries copied in
    for entry in (p for p in text_repo.iterdir() if p.is_dir()):
        shutil.copytree(entry, repo / entry.name)
    return repo, {**requests, **image_requests(repo), **detect_requests()}


def image_requests(repo: Path) -> dict[str, dict[str, np.ndarray]]:
    from harness import one_row

    data = IMAGE.read_bytes()
    return {"digits_cnn": one_row(repo, "digits_cnn"),
            "digits_cnn_ensemble": {"RAW": np.array([[data]], dtype=object)},
            "digits_cnn_ensemble_fused": {"RAW": np.frombuffer(data, np.uint8)}}


def detect_requests() -> dict[str, dict[str, np.ndarray]]:
    from tritonforge.ensembles.fused.detect import decode_rgb
    from tritonforge.ensembles.library import load_template

    data = PHOTO.read_bytes()
    spec = {"output": "images", "dtype": "float32", "height": 160, "width": 160, "pad": 114, "size_output": "SIZE",
            "max_bytes": 1 << 25, "max_pixels": 1 << 24}
    return {"shapes": {"images": load_template("letterbox").images_to_input([data], spec)["images"]},
            "shapes_detect": {"RAW": np.array([[data]], dtype=object)},
            "shapes_detect_fused": {"IMAGE": decode_rgb(data)}}


def reference(stack: ExitStack, repo: Path, backends: Path, scratch: Path, models: list[str]):
    """Triton's C++ ONNX Runtime backend, with onnxruntime-extensions' library on LD_LIBRARY_PATH
    (op_libraries' standalone copy, as deploy/triton installs it) for the fused image and text entries."""
    from tritonforge.repository import op_libraries

    folder = op_libraries.standalone_copy("ortextensions", scratch / "op_libraries").parent
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([str(folder), *filter(None, [os.environ.get("LD_LIBRARY_PATH")])])
    return stack.enter_context(ReferenceServer(repo, backends, []))


def load_each(server, models: list[str]) -> dict[str, str]:
    """Each model loaded through the load API; {model: Triton's reason} for those that do not load
    (their figures are left out, the report says why)."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    refused, client = {}, httpclient.InferenceServerClient(server.url, network_timeout=300)
    for model in models:
        try:
            client.load_model(model)
        except InferenceServerException as exc:
            refused[model] = " ".join(str(exc.message()).split())[:400]
    return refused


def check_answers(servers: dict, served: dict[str, list[str]], requests: dict) -> None:
    """Every figure's request answered once over both protocols before anything is timed."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonforge.repository import kserve_type

    for key, server in servers.items():
        for model in served[key]:
            inputs = requests[model]
            for module, url in ((httpclient, server.url), (grpcclient, server.grpc_url)):
                tensors = []
                for name, value in inputs.items():
                    tensor = module.InferInput(name, list(value.shape), kserve_type(value.dtype))
                    tensor.set_data_from_numpy(value)
                    tensors.append(tensor)
                module.InferenceServerClient(url).infer(model, tensors)


def _process(server):
    return getattr(server, "process", None) or server.server.process


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3, help="seconds a figure, each round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend-directory", type=Path, default=None, help="a folder of Triton backends (its onnxruntime)")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    parser.add_argument("--pipeline", dest="pipelines", action="append", choices=tuple(PIPELINES), default=None,
                        help="measure only this pipeline (repeatable; default: all)")
    args = parser.parse_args(argv)
    args.pipelines = args.pipelines or list(PIPELINES)
    args.refused, args.died = {}, {}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still stops its servers
    models = [m for key in args.pipelines for m in PIPELINES[key]]
    rounds: dict[tuple[str, str, str], list] = {}
    args.load = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="tritonforge-fused-bench-") as scratch, ExitStack() as stack:
        repo, requests = build(Path(scratch))
        servers = {"serve-repo": stack.enter_context(ServeRepoBoth(repo, models))}
        if args.backend_directory:
            servers["C++ backend"] = reference(stack, repo, args.backend_directory, Path(scratch), models)
            args.refused = {("C++ backend", m): why for m, why in load_each(servers["C++ backend"], models).items()}
        served = {s: [m for m in models if (s, m) not in args.refused] for s in servers}
        check_answers(servers, served, requests)
        figures = [(s, p, m) for s in servers for p in ("http", "grpc") for m in served[s]]
        for server, protocol, model in figures:  # warm-up: the first batches, the stubs' caches
            print(f"  warm-up: {server} {protocol} {model}", flush=True)
            measure(servers[server], protocol, model, requests[model], 1)
        for number in range(args.rounds):
            for server, protocol, model in (figures if number % 2 == 0 else figures[::-1]):
                if server in args.died:
                    continue
                try:
                    figure = measure(servers[server], protocol, model, requests[model], args.seconds)
                except Exception as exc:  # a server that dies under load: say so, keep the other figures
                    if _process(servers[server]).poll() is not None:
                        args.died[server] = f"{server} died under {protocol} load of `{model}` in round {number + 1}: {exc}"
                        print(f"  {args.died[server]}", flush=True)
                        continue
                    raise
                rounds.setdefault((server, protocol, model), []).append(figure)
                print(f"  round {number + 1}: {server} {protocol} {model}: {fmt([figure])}", flush=True)
    args.load.append(os.getloadavg())
    text = report(rounds, args)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


def report(r: dict, args) -> str:
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
             f"tritonserver 2.51.0, wrk/h2load 1 thread, {CONNECTIONS} connections, one image or text a request, "
             f"{args.rounds} alternating rounds of {args.seconds:g} s a figure; load average "
             f"{' '.join(f'{x:.2f}' for x in args.load[0])} at the start, {' '.join(f'{x:.2f}' for x in args.load[-1])} at the end.", "",
             "| pipeline | server | protocol | bare model | Python-step ensemble | fused entry | ensemble / bare | fused / bare |",
             "|---|---|---|---|---|---|---|---|"]
    for pipeline in args.pipelines:
        bare, ensemble, fused = PIPELINES[pipeline]
        for server, protocol in dict.fromkeys((s, p) for s, p, _ in r):
            cells = [median_figure(r.get((server, protocol, m))) for m in (bare, ensemble, fused)]
            rates = [f"{c.rate:,.0f} req/s" if c else "-" for c in cells]
            lines.append(f"| {pipeline} | {server} | {protocol} | {' | '.join(rates)} "
                         f"| {ratio(r.get((server, protocol, ensemble)), r.get((server, protocol, bare)))} "
                         f"| {ratio(r.get((server, protocol, fused)), r.get((server, protocol, bare)))} |")
    lines += ["", "Goals (issue 30): fused >= 0.8x of bare on the C++ backend, >= 0.7x on serve-repo.", "",
              "Server CPU a request and errors, each figure:", ""]
    lines += [f"- {s} {p} `{m}`: {fmt(figures)}" for (s, p, m), figures in r.items()]
    if args.died:
        lines += ["", "Servers that died during the run (their later figures are missing):", ""]
        lines += [f"- {why}" for why in args.died.values()]
    if args.refused:
        lines += ["", "Not loaded, so not measured:", ""]
        lines += [f"- {s} `{m}`: {why}" for (s, m), why in args.refused.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
