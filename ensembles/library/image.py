"""``image``: PNG/JPEG bytes -> decoded, resized, scaled, normalised tensor in the model's layout.

Reference: TensorFlow's own decode and resize.
"""
from __future__ import annotations

import io

import numpy as np

from tritonforge.errors import BuildError
from tritonforge.repository import DYNAMIC

from .base import RAW, Arrays, ModelFacts, Step, StepModel, raw_input


class ImageStep(Step):
    name = "image"
    role = "preprocess"
    allowed = {"mean": None, "std": None, "scale": 1 / 255, "layout": "auto"}

    def configure(self, where: str, raw: dict, facts: ModelFacts, role: str) -> StepModel:
        settings = self.settings(where, raw)
        if len(facts.signature.inputs) != 1 or len(facts.signature.inputs[0].shape) != 4:
            raise BuildError(f"{where}: the image step needs one 4-D image input, the model takes {facts.signature.describe()}")
        spec = facts.signature.inputs[0]
        _, a, b, c = spec.shape
        layout = settings["layout"]
        if layout == "auto":
            layout = "NCHW" if a in (1, 3) and c not in (1, 3) else "NHWC"
        if layout not in ("NCHW", "NHWC"):
            raise BuildError(f"{where}: 'layout' must be auto, NCHW or NHWC, got {layout!r}")
        channels, height, width = (a, b, c) if layout == "NCHW" else (c, a, b)
        if channels not in (1, 3) or DYNAMIC in (height, width):
            raise BuildError(f"{where}: cannot read channels/height/width from input '{spec.name}' {list(spec.shape)} as {layout}")
        mean = settings["mean"] or [0.0] * channels
        std = settings["std"] or [1.0] * channels
        if len(mean) != channels or len(std) != channels:
            raise BuildError(f"{where}: 'mean' and 'std' need {channels} values, one per channel")
        step = {"output": spec.name, "dtype": spec.dtype.name, "layout": layout, "height": height, "width": width,
                "channels": channels, "scale": float(settings["scale"]), "mean": [float(m) for m in mean],
                "std": [float(s) for s in std]}
        return StepModel(self, role, (raw_input(),), (spec,), step)

    def run(self, module, inputs: Arrays, step: StepModel) -> Arrays:
        return {step.settings["output"]: module.images_to_input(inputs[RAW].reshape(-1).tolist(), step.settings)}

    def reference(self, values: Arrays, step: StepModel) -> Arrays:
        import tensorflow as tf

        settings = step.settings
        batch = []
        for data in values[RAW].reshape(-1):
            image = tf.io.decode_image(data, channels=settings["channels"], expand_animations=False)
            image = tf.image.resize(tf.cast(image, tf.float32), (settings["height"], settings["width"]))
            batch.append(image.numpy())
        pixels = (np.stack(batch) * settings["scale"] - np.array(settings["mean"])) / np.array(settings["std"])
        if settings["layout"] == "NCHW":
            pixels = pixels.transpose(0, 3, 1, 2)
        return {settings["output"]: pixels.astype(settings["dtype"])}

    def raw_samples(self, step: StepModel, samples: Arrays) -> Arrays:
        """Random PNGs at the model's own size (so no resize algorithm is being compared)."""
        from PIL import Image

        settings = step.settings
        rows = len(next(iter(samples.values())))
        rng = np.random.default_rng(0)
        images = []
        for _ in range(rows):
            shape = (settings["height"], settings["width"]) + ((3,) if settings["channels"] == 3 else ())
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(buffer, format="PNG")
            images.append(buffer.getvalue())
        return {RAW: np.array(images, dtype=object).reshape(-1, 1)}
