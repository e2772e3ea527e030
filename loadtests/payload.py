"""Request payloads for load: a model's stored sample inputs, or tensors made from its metadata.

    spec = TritonClient(url, "http").spec("iris_xgb")
    payload = make_payload(spec, repo=Path("model_repository"), rows=1)
    body, headers = http_body(payload, binary=True)       # KServe v2, ready to POST

Samples come from ``<repo>/<model>/<latest version>/samples.npz`` (what build-repo wrote, so
they are inputs the model accepts); an ensemble with no samples of its own, or a run given no
repository, falls back to tensors made from the metadata (zeros-to-one floats, small integers,
short strings), which any numeric model accepts.

Outputs with a labels file are asked for as clients ask for them: labels with scores from
Triton's classification extension, ``class_count`` = the model's default top-k (``triton-infer``'s).

Image files (``--images DIR`` or a glob, for a model that takes encoded images, such as a detection
ensemble ``<name>_detect``) make one payload per image instead, each the file's bytes in the
model's one BYTES input; users send them in turn::

    payloads = image_payloads(spec, "photos/*.jpg", rows=1)
"""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritonforge.clients.inputs import conform
from tritonforge.clients.spec import ModelSpec
from tritonforge.repository import latest_samples, read_samples

PAYLOAD_SOURCES = ("auto", "samples", "metadata")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_IMAGES = 256  # every image's request is built up front and held by each Locust process


class PayloadError(ValueError):
    """No payload can be made for the model; the message says why and what to give instead."""


@dataclass(frozen=True)
class Payload:
    """One request's inputs for ``model`` and where they came from."""

    model: str
    arrays: dict[str, np.ndarray]
    outputs: tuple[str, ...]
    source: str
    class_counts: tuple[tuple[str, int], ...] = ()  # (labelled output, classes per row) asked of the server

    def class_count(self, output: str) -> int:
        return dict(self.class_counts).get(output, 0)


def samples_path(repo: Path, model: str) -> Path | None:
    """The newest version's samples.npz of ``model`` in ``repo`` (None when there is none)."""
    return latest_samples(Path(repo) / model)


def _from_samples(spec: ModelSpec, path: Path, rows: int) -> dict[str, np.ndarray]:
    stored = read_samples(path).inputs
    arrays = {}
    for tensor in spec.inputs:
        if tensor.name not in stored:
            raise PayloadError(f"{path}: no sample array for input '{tensor.name}' of model '{spec.name}'")
        array = conform(stored[tensor.name], tensor, spec)
        if spec.batches:
            reps = -(-rows // array.shape[0])
            array = np.concatenate([array] * reps)[:rows]
        arrays[tensor.name] = array
    return arrays


def _from_metadata(spec: ModelSpec, rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for tensor in spec.inputs:
        shape = [rows if (i == 0 and spec.batches) else (1 if d < 0 else d) for i, d in enumerate(tensor.shape)]
        dtype = np.dtype(tensor.dtype)
        if tensor.datatype == "BYTES":
            array = np.full(shape, b"0", dtype=object)
        elif tensor.datatype == "BOOL":
            array = rng.random(shape) < 0.5
        elif np.issubdtype(dtype, np.integer):
            array = rng.integers(0, 10, shape).astype(dtype)
        else:
            array = rng.random(shape).astype(dtype)
        arrays[tensor.name] = array
    return arrays


def make_payload(spec: ModelSpec, repo: Path | None = None, *, source: str = "auto",
                 rows: int = 1, seed: int = 0) -> Payload:
    """Inputs for one request of ``rows`` rows (models that batch) from ``source``.

    ``auto`` takes the samples when the repository has them and the metadata otherwise.
    """
    if source not in PAYLOAD_SOURCES:
        raise PayloadError(f"unknown payload source '{source}' (choose {', '.join(PAYLOAD_SOURCES)})")
    path = samples_path(repo, spec.name) if repo is not None else None
    outputs = tuple(t.name for t in spec.outputs)
    classes = tuple((name, spec.top_k(None)) for name in outputs if name in spec.labelled_outputs)
    if source in ("auto", "samples") and path is not None:
        return Payload(spec.name, _from_samples(spec, path, rows), outputs, f"samples {path}", classes)
    if source == "samples":
        raise PayloadError(
            f"model '{spec.name}' has no samples.npz in {repo or 'the repository'} "
            "(give --repo, or use --payload metadata)"
        )
    if any(t.datatype == "BYTES" for t in spec.inputs) and spec.is_ensemble:
        raise PayloadError(
            f"ensemble '{spec.name}' takes BYTES ({spec.describe()}) and has no samples.npz: "
            "encoded payloads cannot be made up from metadata"
        )
    return Payload(spec.name, _from_metadata(spec, rows, seed), outputs, "metadata", classes)


def image_files(pattern: str | Path) -> list[Path]:
    """The image files a folder holds (by suffix) or a glob matches, sorted, at most MAX_IMAGES."""
    path = Path(pattern)
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    elif path.is_file():
        files = [path]
    else:
        files = [Path(p) for p in glob.glob(str(pattern), recursive=True) if Path(p).is_file()]
    if not files:
        raise PayloadError(f"--images {pattern}: no image files there (a folder of {', '.join(IMAGE_SUFFIXES)} files, "
                           "or a glob such as 'photos/*.jpg')")
    return sorted(files)[:MAX_IMAGES]


def image_payloads(spec: ModelSpec, pattern: str | Path, rows: int = 1) -> list[Payload]:
    """One payload per image file (``rows`` images a request, taken in turn, for a model that
    batches), sent as the model's one BYTES input."""
    files = image_files(pattern)
    raw = [t for t in spec.inputs if t.datatype == "BYTES"]
    if len(raw) != 1 or len(spec.inputs) != 1:
        raise PayloadError(f"model '{spec.name}' takes {spec.describe()}: image files are sent to a model whose one input "
                           "is BYTES (a detection ensemble <name>_detect, say)")
    tensor = raw[0]
    per_request = rows if spec.batches else 1
    shape = [per_request if (i == 0 and spec.batches) else (1 if d < 0 else d) for i, d in enumerate(tensor.shape)]
    if int(np.prod(shape)) != per_request:
        raise PayloadError(f"model '{spec.name}' takes {spec.describe()}: input '{tensor.name}' holds "
                           f"{int(np.prod(shape))} values a request, not one image a row")
    images = [f.read_bytes() for f in files]
    outputs = tuple(t.name for t in spec.outputs)
    payloads = []
    for start in range(len(files)):
        chosen = [images[(start + k) % len(images)] for k in range(per_request)]
        array = np.empty(len(chosen), dtype=object)
        array[:] = chosen
        payloads.append(Payload(spec.name, {tensor.name: array.reshape(shape)}, outputs, f"image {files[start]}"))
    return payloads


def http_body(payload: Payload, *, binary: bool = True) -> tuple[bytes, dict[str, str]]:
    """The KServe v2 infer request body and headers (binary tensor data, or all JSON)."""
    import tritonclient.http as httpclient
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, array in payload.arrays.items():
        datatype = "BYTES" if array.dtype == object else np_to_triton_dtype(array.dtype)
        tensor = httpclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary, class_count=payload.class_count(name))
               for name in payload.outputs]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if json_size is not None:
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(json_size)}
    return body, headers


def grpc_inputs(payload: Payload):
    """tritonclient gRPC InferInput/InferRequestedOutput objects for the payload (built once, reused)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, array in payload.arrays.items():
        datatype = "BYTES" if array.dtype == object else np_to_triton_dtype(array.dtype)
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs, [grpcclient.InferRequestedOutput(name, class_count=payload.class_count(name)) for name in payload.outputs]
