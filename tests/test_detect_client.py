"""``triton-infer <name>_detect --input img --draw out.png`` against the served detection ensemble."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fixtures_detect import DETECTOR, YOLO_FIXTURE, ultralytics_detections
from tritonforge.clients.cli import main

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("protocol, port", [("http", "http_url"), ("grpc", "grpc_url")])
def test_triton_infer_draws_the_ensembles_boxes_on_the_image(detect_server, tmp_path, capsys, protocol, port):
    image, out = YOLO_FIXTURE / "images" / "wide.jpg", tmp_path / "boxes.png"
    code = main([f"{DETECTOR}_detect", "--input", str(image), "-i", protocol, "--url", getattr(detect_server, port),
                 "--draw", str(out)])
    expected = ultralytics_detections()["wide.jpg"]
    assert code == 0, capsys.readouterr().err
    assert f"drew {len(expected['boxes'])} box(es) into {out}" in capsys.readouterr().err
    drawn, original = np.asarray(Image.open(out).convert("RGB")), np.asarray(Image.open(image).convert("RGB"))
    assert drawn.shape == original.shape
    # each box's bottom edge is drawn (the label sits above the box, the outline below it is the box's own)
    for x1, _, x2, y2 in expected["boxes"]:
        row, columns = int(round(y2)), slice(int(x1) + 3, int(x2) - 3)
        assert (np.abs(drawn[row - 1:row + 1, columns].astype(int) - original[row - 1:row + 1, columns]).sum(axis=2) > 60).any()


def test_draw_on_an_answer_without_boxes_is_a_clear_error(detect_server, tmp_path, capsys):
    tensor = tmp_path / "letterboxed.npy"
    np.save(tensor, np.full((1, 3, 160, 160), 0.5, np.float32))
    code = main([DETECTOR, "--input", str(tensor), "--url", detect_server.http_url, "--draw", str(tmp_path / "out.png")])
    assert code == 2
    assert ("triton-infer: --draw needs a detection ensemble's outputs; the answer has no BOXES, SCORES, NAMES, COUNT"
            in capsys.readouterr().err)
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_load_drives_the_detect_ensemble_with_its_recorded_images(detect_server, built_detect, tmp_path, protocol):
    """triton-load sends the images the build recorded in shapes_detect's samples, one a request."""
    from tritonforge.loadtests.run import LoadOptions, run_load

    repo, _ = built_detect
    host = f"http://{detect_server.http_url}" if protocol == "http" else detect_server.grpc_url
    summary = run_load(LoadOptions(model=f"{DETECTOR}_detect", protocol=protocol, users=4, duration=4, host=host, repo=repo,
                                   out=tmp_path / "report"))
    assert summary.requests > 0 and summary.failures == 0, summary.failure_messages
    assert summary.exceptions == []
