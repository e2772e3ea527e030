"""A progress display for uploads: one line per file, and percentages inside a large file."""
from __future__ import annotations

import sys
import threading

LARGE = 8 << 20  # files from this size report their bytes as they go (boto3 sends them in parts)


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


class Progress:
    """``[3/7] lin/2/model.onnx 120.0 MB`` then ``... 40%`` steps for large files, on ``stream``."""

    def __init__(self, files: int, total_bytes: int, stream=None) -> None:
        self.files, self.total_bytes = files, total_bytes
        self.stream = stream if stream is not None else sys.stderr
        self.done_files = self.done_bytes = 0
        self._lock = threading.Lock()  # boto3 calls back from its transfer threads

    def start(self, rel: str, size: int):
        """Announce a file; returns the byte callback for boto3 (None for small files)."""
        self.done_files += 1
        self._write(f"[{self.done_files}/{self.files}] {rel} {human(size)}")
        if size < LARGE:
            self.done_bytes += size
            return None
        sent, shown = [0], [0]

        def callback(count: int) -> None:
            with self._lock:
                sent[0] += count
                self.done_bytes += count
                tenth = sent[0] * 10 // size
                if tenth > shown[0]:
                    shown[0] = tenth
                    self._write(f"    {rel}: {tenth * 10}% ({human(self.done_bytes)} of {human(self.total_bytes)} in all)")
        return callback

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


class Silent(Progress):
    def _write(self, line: str) -> None:
        pass
