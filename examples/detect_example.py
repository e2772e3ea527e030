"""The detection example: the committed YOLO fixture as ``shapes.onnx``, held-out images with known
objects, and the mAP50 of the served ``shapes_detect`` on them.

    python examples/detect_example.py models_detect/                       # the model and 24 held-out images
    python examples/detect_example.py models_detect/ --score 127.0.0.1:8000  # ask shapes_detect, print mAP50

The model is tests/fixtures/yolo/shapes_dynamic.onnx: a yolov8n with half of n's width, trained by
ultralytics on generated coloured squares, circles and triangles on noise (tests/fixtures/yolo/
make_fixture.py; ultralytics itself does not load beside this project's torch). The held-out
images follow the same drawing rules with another seed, so their objects are known: each is
checked by eye (``triton-infer shapes_detect --input ... --draw out.png``) and by number (mAP50,
all-point interpolated average precision at IoU 0.5 over the three classes, at the ensemble's own
thresholds: confidence 0.25, NMS IoU 0.7).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "yolo"
NAME = "shapes"
NAMES = ("square", "circle", "triangle")
COLOURS = ((230, 40, 40), (40, 200, 60), (50, 80, 230), (240, 200, 30))  # RGB, as the training data
HELD_OUT_SEED = 7  # training used 0, the fixture's test images 1
HELD_OUT = 24


def draw(rng: np.random.Generator, width: int, height: int, count: int):
    """The training data's rules (make_fixture.draw): blurred noise, non-overlapping filled shapes;
    (BGR image, [(class, x1, y1, x2, y2)])."""
    import cv2

    image = cv2.GaussianBlur(rng.integers(0, 90, (height, width, 3), dtype=np.uint8), (5, 5), 0)
    objects = []
    side = min(width, height)
    for _ in range(count * 20):
        if len(objects) == count:
            break
        size = int(rng.integers(max(12, side // 6), max(13, side // 2.5)))
        x1, y1 = int(rng.integers(0, width - size)), int(rng.integers(0, height - size))
        box = (x1, y1, x1 + size, y1 + size)
        if any(not (box[2] < o[1] or o[3] < box[0] or box[3] < o[2] or o[4] < box[1]) for o in objects):
            continue
        cls = int(rng.integers(0, len(NAMES)))
        colour = tuple(int(c) for c in COLOURS[int(rng.integers(0, len(COLOURS)))][::-1])
        if cls == 0:
            cv2.rectangle(image, box[:2], (box[2] - 1, box[3] - 1), colour, -1)
        elif cls == 1:
            cv2.circle(image, (x1 + size // 2, y1 + size // 2), size // 2, colour, -1, lineType=cv2.LINE_AA)
        else:
            points = np.array([[x1 + size // 2, y1], [x1, y1 + size - 1], [x1 + size - 1, y1 + size - 1]], np.int32)
            cv2.fillPoly(image, [points], colour, lineType=cv2.LINE_AA)
        objects.append((cls, *box))
    return image, objects


def write_example(out: Path, count: int = HELD_OUT) -> Path:
    """``out/shapes.onnx`` and ``out/held_out/`` (JPEG and PNG images of several sizes, ``objects.json``)."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE / "shapes_dynamic.onnx", out / f"{NAME}.onnx")
    folder = out.parent / f"{out.name}_held_out"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(HELD_OUT_SEED)
    truths = {}
    for i in range(count):
        width, height = int(rng.integers(120, 400)), int(rng.integers(120, 400))
        image, objects = draw(rng, width, height, int(rng.integers(1, 5)))
        name = f"shapes_{i:02d}.{'jpg' if i % 2 else 'png'}"
        cv2.imwrite(str(folder / name), image, [cv2.IMWRITE_JPEG_QUALITY, 95] if i % 2 else [])
        truths[name] = [{"class": NAMES[c], "box": [x1, y1, x2, y2]} for c, x1, y1, x2, y2 in objects]
    (folder / "objects.json").write_text(json.dumps(truths, indent=1) + "\n")
    return folder


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def mean_ap50(detections: dict[str, list[dict]], truths: dict[str, list[dict]], names=NAMES) -> float:
    """All-point interpolated AP at IoU 0.5, averaged over the classes that have objects.
    ``detections``: per image, dicts of class, box, score; ``truths``: per image, dicts of class, box."""
    aps = []
    for name in names:
        wanted = {img: [t["box"] for t in objs if t["class"] == name] for img, objs in truths.items()}
        total = sum(len(b) for b in wanted.values())
        if not total:
            continue
        found = sorted(((d["score"], img, d["box"]) for img, ds in detections.items() for d in ds if d["class"] == name),
                       key=lambda f: -f[0])
        used = {img: [False] * len(boxes) for img, boxes in wanted.items()}
        hits = []
        for _, img, box in found:
            overlaps = [iou(box, t) for t in wanted.get(img, [])]
            best = int(np.argmax(overlaps)) if overlaps else -1
            hit = best >= 0 and overlaps[best] >= 0.5 and not used[img][best]
            if hit:
                used[img][best] = True
            hits.append(hit)
        tp = np.cumsum(hits)
        recall = np.concatenate([[0.0], tp / total, [1.0]])
        precision = np.concatenate([[1.0], tp / np.arange(1, len(hits) + 1), [0.0]])
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # the precision envelope
        aps.append(float(np.sum((recall[1:] - recall[:-1]) * precision[1:])))
    return float(np.mean(aps)) if aps else 0.0


def ask(url: str, folder: Path, protocol: str = "http") -> dict[str, list[dict]]:
    """shapes_detect's answer for every held-out image: per image, dicts of class, box, score."""
    from tritonforge.clients.client import TritonClient

    answers = {}
    with TritonClient(url, protocol) as client:
        for name in json.loads((folder / "objects.json").read_text()):
            raw = np.array([[(folder / name).read_bytes()]], dtype=object)
            out = client.infer(f"{NAME}_detect", {"RAW": raw}).outputs
            count = int(out["COUNT"][0, 0])
            answers[name] = [{"class": n.decode(), "box": b.tolist(), "score": float(s)}
                             for b, s, n in zip(out["BOXES"][0, :count], out["SCORES"][0, :count], out["NAMES"][0, :count])]
    return answers


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="models folder to write shapes.onnx into")
    parser.add_argument("--score", metavar="HOST:PORT", default=None, help="ask the served shapes_detect, print mAP50")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    args = parser.parse_args(argv)
    folder = write_example(args.out)
    truths = json.loads((folder / "objects.json").read_text())
    print(f"{NAME}: {args.out / (NAME + '.onnx')}; {len(truths)} held-out images with "
          f"{sum(len(o) for o in truths.values())} known objects in {folder}")
    if args.score:
        answers = ask(args.score, folder, args.protocol)
        print(f"{NAME}_detect: mAP50 {mean_ap50(answers, truths):.3f} on {len(truths)} held-out images "
              f"({sum(len(a) for a in answers.values())} boxes answered)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
