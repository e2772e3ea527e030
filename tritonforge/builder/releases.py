"""What each NGC Triton release can serve, so a repository is built for the release that will run it."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import BuildError

# The nvidia-pytriton wheel bundles tritonserver 2.51.0, which is NGC release 24.10: building for it
# by default means the local server and docker-compose's image serve the same repository.
DEFAULT_RELEASE = "24.10"
# The TensorFlow backend was deprecated in 25.03 and is absent from later images.
LAST_TENSORFLOW_RELEASE = (25, 2)


@dataclass(frozen=True)
class TritonRelease:
    name: str  # NGC tag, e.g. "24.10"
    year: int
    month: int

    @property
    def image(self) -> str:
        return f"nvcr.io/nvidia/tritonserver:{self.name}-py3"

    def serves(self, platform: str) -> bool:
        if platform == "tensorflow_savedmodel":
            return (self.year, self.month) <= LAST_TENSORFLOW_RELEASE
        return True

    def refuse_unservable(self, platform: str) -> None:
        if not self.serves(platform):
            raise BuildError(
                f"Triton {self.name} has no TensorFlow backend (gone after 25.02): build this model as ONNX, "
                "or pass --triton-version 25.02 or older"
            )


def parse_release(text: str) -> TritonRelease:
    try:
        year, month = (int(part) for part in text.split("."))
        if not (20 <= year <= 99 and 1 <= month <= 12):
            raise ValueError
    except ValueError:
        raise BuildError(f"--triton-version {text!r}: expected an NGC release such as 24.10 or 25.02") from None
    return TritonRelease(f"{year:02d}.{month:02d}", year, month)
