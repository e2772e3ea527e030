"""check-repo on detection: the detector entry and ``<name>_detect`` are checked on the images and
detections the build recorded; a recorded detection the server does not answer (moved, another
class, a score, a box too many or too few) fails check-repo, with the image and the box named."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from fixtures_detect import DECLARED_DETECTOR, DETECTOR, STATIC_DETECTOR, V5_DETECTOR

pytestmark = pytest.mark.slow
ENSEMBLE = f"{DETECTOR}_detect"


def tampered_copy(repo, tmp_path, change):
    """A copy of the built repository whose shapes_detect samples.npz ``change`` rewrote."""
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    path = copy / ENSEMBLE / "1" / "samples.npz"
    with np.load(path, allow_pickle=False) as stored:
        arrays = {name: stored[name].copy() for name in stored.files}
    change(arrays)
    np.savez(path, **arrays)
    return copy


def moved(px):
    def change(arrays):
        arrays["output/BOXES"][0, 0, [0, 2]] += px
    return change


def renamed(arrays):
    arrays["output/CLASSES"][0, 0] = 1
    arrays["output/NAMES"][0, 0] = "circle"


def rescored(arrays):
    arrays["output/SCORES"][1, 0] -= 0.01


def dropped(arrays):
    arrays["output/COUNT"][2, 0] = 0


# (what is changed in the recorded detections, the check's verdict on it)
TAMPERED = [
    ("a box moved 0.5 px: within the tolerance", moved(0.5), None),
    ("a box moved 5 px", moved(5.0), r"detections: image 0: the square box recorded at \[.*\] is answered 5.00 px off"),
    ("a box of another class", renamed, r"detections: image 0: no circle box answered where one was recorded at"),
    ("a score 0.01 lower", rescored, r"detections: image 1: the square box .* score 0.\d+ \(recorded 0.\d+\)"),
    ("a box fewer", dropped, r"detections: image 2: 1 boxes, recorded 0"),
]


def test_check_repo_checks_every_detector_and_detect_ensemble_on_its_recorded_images(detect_server, built_detect):
    from tritonforge.serving.check import check_repository

    repo, _ = built_detect
    names = [n for d in (DETECTOR, STATIC_DETECTOR, DECLARED_DETECTOR, V5_DETECTOR) for n in (d, f"{d}_detect")]
    rows = check_repository(repo, http_url=detect_server.http_url, grpc_url=detect_server.grpc_url, models=names)
    assert len(rows) == 2 * len(names) and all(r.ok and r.checked for r in rows), [r for r in rows if not r.ok]
    ensembles = [r for r in rows if r.model.endswith("_detect")]
    # every sample image of the batched ensembles holds a box (the check is not of empty answers)
    assert all(r.samples.startswith(("3 images, 3 boxes as recorded", "1 images, 1 boxes as recorded")) for r in ensembles), ensembles


@pytest.mark.parametrize("case, change, failure", TAMPERED, ids=[t[0] for t in TAMPERED])
def test_a_detection_the_server_does_not_answer_fails_check_repo(detect_server, built_detect, tmp_path, case, change, failure):
    from tritonforge.serving.check import check_repository

    repo = tampered_copy(built_detect[0], tmp_path, change)
    rows = check_repository(repo, http_url=detect_server.http_url, grpc_url=detect_server.grpc_url, models=[ENSEMBLE])
    assert [r.protocol for r in rows] == ["http", "grpc"]
    for row in rows:
        if failure is None:
            assert row.ok, row
        else:
            assert not row.ok and row.result == "FAIL", row
            assert __import__("re").search(failure, row.samples), row.samples


def test_the_check_repo_command_exits_1_on_a_wrong_detection(detect_server, built_detect, tmp_path, capsys):
    from tritonforge.serving.cli import check_main

    repo = tampered_copy(built_detect[0], tmp_path, moved(5.0))
    code = check_main([str(repo), "--url", detect_server.http_url, "--grpc-url", detect_server.grpc_url, "--model", ENSEMBLE])
    out = capsys.readouterr().out
    assert code == 1
    assert out.count("5.00 px off") == 2  # HTTP and gRPC rows
