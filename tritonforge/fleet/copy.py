"""A local working copy of a published repository's configs and manifest, published back after a
change: how repo-versions promotes and rolls back a repository that lives in a bucket."""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import FleetError
from .location import BucketUrl
from .mirror import BucketMirror
from .publish import PublishReport, publish_repository
from .store import Store


@dataclass
class BucketCopy:
    local: Path  # version folders are there, empty: the versions are the published ones
    report: PublishReport | None = None  # what publishing the change back did


@contextlib.contextmanager
def bucket_copy(url: str | BucketUrl, *, endpoint_url: str | None = None):
    """Yield a :class:`BucketCopy`; whatever the block changed in its configs and manifest is
    published back when the block ends without an exception (nothing, when nothing changed).

        with bucket_copy("s3://models/repo") as copy:
            serve_versions(copy.local, "lin", "2", why="promote")
    """
    url = url if isinstance(url, BucketUrl) else BucketUrl.parse(url)
    store = Store(url, endpoint_url)
    with tempfile.TemporaryDirectory(prefix="tritonforge-bucket-") as scratch:
        copy = BucketCopy(Path(scratch) / "model_repository")
        report = BucketMirror(url, copy.local, store=store, with_versions=False).sync()
        if report.waiting:  # a copy without those files would publish their removal
            raise FleetError(f"{url}: a publish is under way or was cut short ({', '.join(report.waiting)} do not match "
                             f"the index); let it finish, or publish again, then retry; nothing changed")
        yield copy
        copy.report = publish_repository(copy.local, url, store=store, versions_as_published=True)
