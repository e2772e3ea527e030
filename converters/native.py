"""Native libraries that log to the terminal before anyone can configure them."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration.

    TensorFlow's C++ start-up lines ("oneDNN custom operations are on", "Could not find cuda
    drivers") are written by absl before TF_CPP_MIN_LOG_LEVEL is read. Python exceptions are
    unaffected: they propagate and are reported after stderr is restored.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """``import tensorflow, keras`` without their start-up chatter; returns (tf, keras)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_stderr():
        import keras
        import tensorflow as tf
    return tf, keras
