"""Detection: ``<model>_detect``, an ensemble that takes encoded images and answers boxes.

    RAW (JPEG/PNG bytes, one image a row)
      -> <model>_letterbox   (ultralytics' square letterbox: images [3, H, W] + IMAGE_SIZE [2])
      -> <model>             (the YOLO detector: its raw head output)
      -> <model>_detect_post (confidence, per-class NMS, max_det, boxes back to original pixels)
      => BOXES [n, 4] FP32 xyxy, SCORES [n] FP32, CLASSES [n] INT32, NAMES [n] BYTES, COUNT [1] INT32

Unlike the sidecar's ``preprocess``/``postprocess`` pair, the postprocess here reads a tensor of
the preprocess (each image's original size) besides the model's output, so this module plans and
verifies its own chain: :func:`plan_detect`, given a built detector entry. Verification runs the
sample images through the step templates around the converted artifact and around the source
export, and every output must agree.

Settings (a sidecar's ``detect:`` mapping, all optional)::

    detect: {conf: 0.25, iou: 0.7, max_det: 300, names: [...], pad: 114,
             max_bytes: 33554432, max_pixels: 16777216}

The same group's ``layout``, ``imgsz`` and ``stride`` declare the head of an ONNX file without
ultralytics' metadata; the YOLO adapter reads and checks them (converters/adapters/yolo.py).
"""
from __future__ import annotations

import io
from typing import Any, Callable

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from tritonforge import verify
from tritonforge.errors import BuildError
from tritonforge.repository import STRING, TensorSpec

from .base import RAW, Arrays, Step, StepModel

Run = Callable[[Arrays], Arrays]

IMAGE_SIZE = "IMAGE_SIZE"
OUTPUTS = ("BOXES", "SCORES", "CLASSES", "NAMES", "COUNT")
DEFAULTS: dict[str, Any] = {"conf": 0.25, "iou": 0.7, "max_det": 300, "names": None, "pad": 114,
                            "max_bytes": 32 << 20, "max_pixels": 4096 * 4096}
DECLARED = ("layout", "imgsz", "stride")  # the head's declaration: read and checked by the YOLO adapter
# Sample images for verification: (width, height, format). Non-square both ways, JPEG and PNG.
SAMPLE_IMAGES = ((320, 180, "JPEG"), (150, 260, "PNG"), (96, 72, "PNG"))


def ensemble_name(model: str) -> str:
    return f"{model}_detect"


def detect_settings(where: str, raw: dict | None, names: tuple[str, ...]) -> dict[str, Any]:
    """The sidecar's ``detect:`` mapping checked against :data:`DEFAULTS`; a one-line refusal names the key."""
    raw = {key: value for key, value in (raw or {}).items() if key not in DECLARED}
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise BuildError(f"{where}: detect: unknown key '{sorted(unknown)[0]}' (allowed: {', '.join((*DEFAULTS, *DECLARED))})")
    settings = {**DEFAULTS, **raw}
    for key in ("conf", "iou"):
        if not isinstance(settings[key], (int, float)) or not 0 <= settings[key] <= 1:
            raise BuildError(f"{where}: detect: '{key}' must be a number in [0, 1], got {settings[key]!r}")
    for key in ("max_det", "max_bytes", "max_pixels"):
        if not isinstance(settings[key], int) or isinstance(settings[key], bool) or settings[key] < 1:
            raise BuildError(f"{where}: detect: '{key}' must be a positive integer, got {settings[key]!r}")
    if not isinstance(settings["pad"], int) or not 0 <= settings["pad"] <= 255:
        raise BuildError(f"{where}: detect: 'pad' must be a grey level 0..255, got {settings['pad']!r}")
    given = settings["names"]
    if given is not None and (not isinstance(given, list) or len(given) != len(names)):
        raise BuildError(f"{where}: detect: 'names' must list {len(names)} class names, one per class of the model")
    settings["names"] = [str(n) for n in (given or names)]
    return settings


class LetterboxStep(Step):
    name = "letterbox"
    role = "preprocess"

    def run(self, module, inputs: Arrays, step: StepModel) -> Arrays:
        return module.images_to_input(inputs[RAW].reshape(-1).tolist(), step.settings)


class DetectPostStep(Step):
    name = "detect_post"
    role = "postprocess"

    def run(self, module, inputs: Arrays, step: StepModel) -> Arrays:
        return module.detections(inputs[step.settings["input"]], inputs[step.settings["size_input"]], step.settings)


LETTERBOX, DETECT_POST = LetterboxStep(), DetectPostStep()


def steps(detector, settings: dict[str, Any], model_config: mc.ModelConfig) -> tuple[StepModel, StepModel]:
    """The letterbox and postprocess step models for ``detector`` (a :class:`~converters.adapters.yolo.Detector`)."""
    [image] = [t for t in model_config.input if t.name == detector.input]
    [head] = [t for t in model_config.output if t.name == detector.output]
    # A batched detector's dims leave out the batch; an unbatched one's (a static export, batch 1)
    # are whole, and its steps then take and give exactly one image.
    batch = (-1,) if model_config.max_batch_size > 0 else ()
    rows = -1 if model_config.max_batch_size > 0 else 1
    image_spec = TensorSpec(detector.input, np.dtype(np.float32), (*batch, *image.dims))
    size_spec = TensorSpec(IMAGE_SIZE, np.dtype(np.int32), (rows, 2))
    raw = TensorSpec(RAW, STRING, (rows, 1))
    letterbox = StepModel(LETTERBOX, "preprocess", (raw,), (image_spec, size_spec),
                          {"output": detector.input, "dtype": "float32", "height": detector.height, "width": detector.width,
                           "pad": settings["pad"], "size_output": IMAGE_SIZE, "max_bytes": settings["max_bytes"],
                           "max_pixels": settings["max_pixels"]})
    head_spec = TensorSpec(detector.output, np.dtype(np.float32), (*batch, *head.dims))
    outputs = (TensorSpec("BOXES", np.dtype(np.float32), (rows, -1, 4)), TensorSpec("SCORES", np.dtype(np.float32), (rows, -1)),
               TensorSpec("CLASSES", np.dtype(np.int32), (rows, -1)), TensorSpec("NAMES", STRING, (rows, -1)),
               TensorSpec("COUNT", np.dtype(np.int32), (rows, 1)))
    post = StepModel(DETECT_POST, "postprocess", (head_spec, size_spec), outputs,
                     {"input": detector.output, "size_input": IMAGE_SIZE, "layout": detector.layout, "names": settings["names"],
                      "height": detector.height, "width": detector.width, "conf": float(settings["conf"]),
                      "iou": float(settings["iou"]), "max_det": settings["max_det"]})
    return letterbox, post


def sample_images(seed: int = 0) -> Arrays:
    """Noise with a few filled shapes, at sizes that are not the model's and not square."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    encoded = []
    for width, height, fmt in SAMPLE_IMAGES:
        image = Image.fromarray(rng.integers(0, 90, (height, width, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(image)
        side = min(width, height) // 3
        x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
        draw.rectangle((x, y, x + side, y + side), fill=(230, 40, 40))
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        encoded.append(buffer.getvalue())
    return {RAW: np.array(encoded, dtype=object).reshape(-1, 1)}


def plan_detect(model_name: str, source: str, detector, raw_settings: dict | None, model_config: mc.ModelConfig,
                run_artifact: Run, run_source: Run, atol: float, rtol: float):
    """The step and ensemble entries (:class:`~tritonforge.ensembles.build.Entry`) around a built
    detector, verified on :func:`sample_images`; nothing is written here."""
    from ..build import Entry
    from .. import wiring

    settings = detect_settings(source, raw_settings, detector.names)
    letterbox, post = steps(detector, settings, model_config)
    mbs = model_config.max_batch_size
    named = ((f"{model_name}_letterbox", letterbox), (f"{model_name}_detect_post", post))
    configs = [wiring.step_config(name, step, mbs) for name, step in named]
    ensemble = wiring.ensemble_config(ensemble_name(model_name), [configs[0], model_config, configs[1]])

    raw = sample_images()
    if mbs == 0:  # an unbatched detector takes one image a request: verify on the first
        raw = {RAW: raw[RAW][:1]}
    try:
        features = letterbox.run(raw)
        images = {detector.input: features[detector.input]}
        served = post.run({**run_artifact(images), IMAGE_SIZE: features[IMAGE_SIZE]})
        expected = post.run({**run_source(images), IMAGE_SIZE: features[IMAGE_SIZE]})
    except (ValueError, TypeError) as exc:
        raise BuildError(f"{source}: ensemble '{ensemble.name}' fails on the sample images ({type(exc).__name__}: {exc})") from None
    errors = []
    for name in OUTPUTS:
        if served[name].shape != expected[name].shape:
            raise BuildError(f"{source}: ensemble '{ensemble.name}' does not match the source export: output '{name}' "
                             f"has shape {list(served[name].shape)}, the source gave {list(expected[name].shape)}")
        errors.append(verify.compare_one(name, expected[name], served[name], atol, rtol))
    if not all(e.ok for e in errors):
        raise BuildError(f"{source}: ensemble '{ensemble.name}' does not match the source export: "
                         f"{verify.describe_mismatch(tuple(errors))}")
    # The letterbox decodes and resizes with OpenCV, as ultralytics does (the image that serves it needs it).
    entries = [Entry(name, config, template=step.template, requirements=("opencv-python-headless",) if step is letterbox else ())
               for (name, step), config in zip(named, configs)]
    entries.append(Entry(ensemble.name, ensemble, samples=(raw, {n: expected[n] for n in OUTPUTS}),
                         labels=tuple(settings["names"])))
    return entries, tuple(errors)


def plan_for_build(build):
    """The hook for the build's ensemble stage: ``(entries, errors)`` of ``<name>_detect`` around a
    built detector (batched, or a static export taking one image a request), or None for any other
    model. ``build`` is the builder's ModelBuild after ``configure_entry``; the
    sidecar's ``detect:`` mapping, once the sidecar reads one, overrides thresholds and names."""
    detector = getattr(build.adapter, "detector", None)
    if detector is None:
        return None
    checked = build.verified
    return plan_detect(build.name, build.source.path.name, detector(build.model), getattr(build.sidecar, "detect", None),
                       build.config, checked.run_artifact,
                       lambda inputs: build.adapter.reference(build.model, inputs, build.signature), checked.atol, checked.rtol)
