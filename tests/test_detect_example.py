"""The detection example (examples/detect_example.py): held-out images with known objects, and
the served shapes_detect scored on them by mAP50."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from detect_example import HELD_OUT, main, mean_ap50, write_example  # noqa: E402

SQUARE = {"class": "square", "box": [10, 10, 50, 50]}

# (case, detections per image, truths per image, mAP50)
AP_CASES = [
    ("every object found once", {"a": [{**SQUARE, "score": 0.9}]}, {"a": [SQUARE]}, 1.0),
    ("nothing found", {"a": []}, {"a": [SQUARE]}, 0.0),
    ("a duplicate after the hit is a false positive past full recall",
     {"a": [{**SQUARE, "score": 0.9}, {**SQUARE, "score": 0.8}]}, {"a": [SQUARE]}, 1.0),
    ("a false positive ranked first halves the precision at the hit",
     {"a": [{"class": "square", "box": [100, 100, 140, 140], "score": 0.95}, {**SQUARE, "score": 0.9}]},
     {"a": [SQUARE]}, 0.5),
    ("a box overlapping under 0.5 is a miss", {"a": [{"class": "square", "box": [30, 30, 70, 70], "score": 0.9}]},
     {"a": [SQUARE]}, 0.0),
    ("the wrong class is a miss of both classes",
     {"a": [{"class": "circle", "box": [10, 10, 50, 50], "score": 0.9}]},
     {"a": [SQUARE, {"class": "circle", "box": [60, 60, 90, 90]}]}, 0.0),
]


@pytest.mark.parametrize("case, detections, truths, expected", AP_CASES, ids=[c[0] for c in AP_CASES])
def test_mean_ap50(case, detections, truths, expected):
    assert mean_ap50(detections, truths) == pytest.approx(expected)


def test_the_example_writes_the_model_and_held_out_images_with_their_objects(tmp_path):
    folder = write_example(tmp_path / "models_detect")
    truths = json.loads((folder / "objects.json").read_text())
    assert (tmp_path / "models_detect" / "shapes.onnx").is_file()
    assert len(truths) == HELD_OUT and all(truths.values())
    assert {p.suffix for p in folder.iterdir()} == {".jpg", ".png", ".json"}


@pytest.mark.slow
@pytest.mark.parametrize("protocol, url", [("http", "http_url"), ("grpc", "grpc_url")])
def test_the_served_ensemble_finds_the_held_out_objects(detect_server, tmp_path, capsys, protocol, url):
    assert main([str(tmp_path / "models_detect"), "--score", getattr(detect_server, url), "--protocol", protocol]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    score = float(line.split("mAP50 ")[1].split()[0])
    assert line.startswith("shapes_detect: mAP50 ") and score >= 0.9, line
