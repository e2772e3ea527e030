"""Bad images against ``shapes_detect``, over HTTP and gRPC: each a 400 with one clear line naming
the row and the cause (nothing of the server's files, no traceback), nothing decoded past the
limits, and the ensemble answers a good image right after."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from fixtures_detect import DETECTOR
from test_detect import PROTOCOLS, assert_same_detections, detect, image_bytes, ultralytics_detections

pytestmark = pytest.mark.slow
BAD_INPUT = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}
LEAKS = ("At:", "Traceback", "/tmp/", "/work/", "/root/", "site-packages", ".py(")
GOOD = "wide.jpg"


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG of a few bytes whose header claims ``width`` x ``height`` pixels (a bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def truncated(name: str) -> bytes:
    data = image_bytes(name)
    return data[: len(data) // 2]


# (case, image bytes, what the client must read)
HOSTILE = [
    ("a truncated JPEG", lambda: truncated("wide.jpg"), "row 0: cannot decode image (truncated JPEG: no end-of-image marker)"),
    ("a truncated PNG", lambda: truncated("tall.png"), "row 0: cannot decode image (truncated PNG)"),
    ("random bytes", lambda: np.random.default_rng(0).bytes(5000), "row 0: cannot decode image (not a JPEG or PNG)"),
    ("an empty body", lambda: b"", "row 0: empty image"),
    ("a PNG claiming 50000x50000 pixels", lambda: png_claiming(50000, 50000),
     "row 0: image of 50000x50000 pixels is larger than 16777216 pixels"),
    ("a JPEG header and 100 MB", lambda: b"\xff\xd8\xff" + bytes(100 << 20),
     "row 0: image of 104857603 bytes is larger than 33554432"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case, data, message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_bad_image_is_a_clear_400_and_the_ensemble_keeps_answering(detect_server, protocol, case, data, message):
    with pytest.raises(InferenceServerException) as error:
        detect(detect_server, protocol, [data()])
    text = str(error.value)
    assert message in text, text
    assert error.value.status() == BAD_INPUT[protocol]
    assert "\n" not in text.strip() and not any(leak in text for leak in LEAKS), text
    assert_same_detections(detect(detect_server, protocol, [image_bytes(GOOD)]), ultralytics_detections()[GOOD])


def test_a_bad_second_image_names_its_row(detect_server):
    with pytest.raises(InferenceServerException, match="row 1: cannot decode image"):
        detect(detect_server, "http", [image_bytes(GOOD), b"GIF89a not an image we take"])


def test_the_bad_image_table_leaves_the_steps_memory_bounded(detect_server):
    """After every bad image of the table (a 50000x50000 claim, 100 MB bodies), the letterbox
    step's process holds no more than a few model-sized images: nothing was decoded at the claimed size."""
    def step_rss() -> int:
        stubs = [pid for pid in descendants(detect_server.process.pid) if f"{DETECTOR}_letterbox" in cmdline(pid)]
        assert stubs, "no letterbox stub process found"
        return sum(rss(pid) for pid in stubs)

    for _, data, _ in HOSTILE:
        for protocol in PROTOCOLS:
            with pytest.raises(InferenceServerException):
                detect(detect_server, protocol, [data()])
    # 50000x50000x3 decoded would be 7.5 GB; the step's interpreter, numpy and OpenCV are ~100-200 MB.
    assert step_rss() < 400 << 20, step_rss()


def descendants(root: int) -> list[int]:
    """The processes under ``root``, read from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    return 0
