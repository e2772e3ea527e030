"""``triton-infer <name>_detect --input img.jpg --draw out.png``: the detections drawn on the image.

Reads a detection ensemble's outputs (``BOXES`` xyxy in the image's own pixels, ``SCORES``,
``NAMES``, ``COUNT``) for the first image of the request.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DETECTION_OUTPUTS = ("BOXES", "SCORES", "NAMES", "COUNT")
COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240))


class DrawError(ValueError):
    """The answer is not a detection ensemble's, or the picture cannot be written."""


def draw_detections(image_path: Path, outputs: dict[str, np.ndarray], out: Path, row: int = 0) -> int:
    """Draw the boxes of ``row`` with their class names and scores; the number of boxes drawn."""
    from PIL import Image, ImageDraw

    missing = [n for n in DETECTION_OUTPUTS if n not in outputs]
    if missing:
        raise DrawError(f"--draw needs a detection ensemble's outputs; the answer has no {', '.join(missing)}")
    count = int(np.asarray(outputs["COUNT"]).reshape(-1)[row])
    boxes = np.asarray(outputs["BOXES"])[row, :count]
    scores = np.asarray(outputs["SCORES"])[row, :count]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(outputs["NAMES"])[row, :count]]
    image = Image.open(image_path).convert("RGB")
    pen = ImageDraw.Draw(image)
    palette = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(sorted(set(names)))}
    for (x1, y1, x2, y2), score, name in zip(boxes.tolist(), scores.tolist(), names):
        colour = palette[name]
        pen.rectangle((x1, y1, x2, y2), outline=colour, width=2)
        label = f"{name} {score:.2f}"
        left, top, right, bottom = pen.textbbox((x1, y1), label)
        lift = bottom - top + 2
        pen.rectangle((x1, y1 - lift, x1 + right - left + 4, y1), fill=colour)
        pen.text((x1 + 2, y1 - lift), label, fill=(255, 255, 255))
    try:
        image.save(out)
    except (OSError, ValueError) as exc:
        raise DrawError(f"cannot write {out}: {exc}") from None
    return count
