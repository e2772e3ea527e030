"""``triton-load`` (Locust) drives a detection ensemble with image files: ``--images`` takes a
folder or a glob, and each file is one request's BYTES input, sent in turn, over HTTP and gRPC."""
from __future__ import annotations

import shutil

import pytest

from fixtures_detect import DETECTOR, STATIC_DETECTOR, YOLO_FIXTURE

pytestmark = pytest.mark.slow
IMAGES = YOLO_FIXTURE / "images"


def spec(server, model):
    from tritonforge.clients.client import TritonClient

    with TritonClient(server.http_url, "http") as client:
        return client.spec(model)


def load(server, protocol, model, images, out):
    from tritonforge.loadtests.run import LoadOptions, run_load

    host = f"http://{server.http_url}" if protocol == "http" else server.grpc_url
    return run_load(LoadOptions(model=model, protocol=protocol, users=3, duration=4, host=host, images=str(images), out=out))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_load_sends_a_folder_of_images_to_the_detect_ensemble(detect_server, tmp_path, protocol):
    summary = load(detect_server, protocol, f"{DETECTOR}_detect", IMAGES, tmp_path / "report")
    assert summary.requests > 0 and summary.failures == 0, summary.failure_messages
    assert summary.exceptions == []


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_every_image_is_sent_in_turn_a_broken_one_fails_its_requests(detect_server, tmp_path, protocol):
    """One truncated JPEG among the fixture's five images: about a sixth of the requests fail, with
    the letterbox step's 400, and the others are answered: the images really are sent in turn."""
    folder = tmp_path / "images"
    shutil.copytree(IMAGES, folder)
    (folder / "zz_broken.jpg").write_bytes((IMAGES / "wide.jpg").read_bytes()[:500])
    summary = load(detect_server, protocol, f"{DETECTOR}_detect", folder, tmp_path / "report")
    assert summary.requests >= 12, summary
    assert 0 < summary.failures < summary.requests
    assert all("truncated JPEG" in f["error"] for f in summary.failure_messages), summary.failure_messages


def test_a_glob_and_the_static_exports_ensemble_one_image_a_request(detect_server, tmp_path):
    summary = load(detect_server, "grpc", f"{STATIC_DETECTOR}_detect", IMAGES / "*.png", tmp_path / "report")
    assert summary.requests > 0 and summary.failures == 0 and summary.exceptions == [], summary


def test_image_payloads_hold_each_file_in_the_bytes_input(detect_server):
    from tritonforge.loadtests.payload import image_payloads

    files = sorted(IMAGES.iterdir())
    payloads = image_payloads(spec(detect_server, f"{DETECTOR}_detect"), IMAGES, rows=2)
    assert len(payloads) == len(files)
    assert [p.arrays["RAW"].shape for p in payloads] == [(2, 1)] * len(files)
    assert payloads[0].arrays["RAW"][:, 0].tolist() == [files[0].read_bytes(), files[1].read_bytes()]
    assert payloads[-1].arrays["RAW"][1, 0] == files[0].read_bytes()  # in turn, round the end
    static = image_payloads(spec(detect_server, f"{STATIC_DETECTOR}_detect"), IMAGES, rows=4)
    assert {p.arrays["RAW"].shape for p in static} == {(1, 1)}  # an unbatched ensemble takes one image a request


def test_images_for_a_model_without_a_bytes_input_or_a_pattern_matching_nothing_are_refused(detect_server, tmp_path, capsys):
    from tritonforge.loadtests.payload import PayloadError, image_payloads
    from tritonforge.loadtests.run import main

    with pytest.raises(PayloadError, match=rf"model '{DETECTOR}' takes .*image files are sent to a model whose one input is BYTES"):
        image_payloads(spec(detect_server, DETECTOR), IMAGES)
    code = main([f"{DETECTOR}_detect", "--images", str(tmp_path / "none" / "*.jpg"), "--host", f"http://{detect_server.http_url}",
                 "--out", str(tmp_path / "report")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("triton-load: --images ") and "no image files there" in err and err.count("\n") == 1
    assert not (tmp_path / "report").exists()
