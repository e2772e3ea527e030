"""``s3://bucket/prefix``: where a repository is published, and the keys of its files."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import FleetError

SCHEME = "s3://"
# S3's bucket naming rules (3-63 characters, lower case, digits, dots and hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def is_bucket_url(text) -> bool:
    return str(text).startswith(SCHEME)


@dataclass(frozen=True)
class BucketUrl:
    """A repository's place in object storage; ``prefix`` has no leading or trailing slash.

        url = BucketUrl.parse("s3://models/prod/repo")
        url.key("lin/1/model.onnx") == "prod/repo/lin/1/model.onnx"
    """

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, text: str) -> "BucketUrl":
        text = str(text)
        if not is_bucket_url(text):
            raise FleetError(f"{text}: not an object-storage URL (say s3://bucket/prefix)")
        bucket, _, prefix = text[len(SCHEME):].partition("/")
        prefix = prefix.strip("/")
        if not _BUCKET.fullmatch(bucket):
            raise FleetError(f"{text}: '{bucket}' is not a valid bucket name (3-63 of a-z, 0-9, '.', '-')")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise FleetError(f"{text}: the prefix '{prefix}' has an empty, '.' or '..' part")
        return cls(bucket, prefix)

    def key(self, rel: str) -> str:
        """The object key of a file at ``rel`` (relative to the repository, '/'-separated)."""
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def rel(self, key: str) -> str:
        return key[len(self.prefix) + 1:] if self.prefix else key

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"
