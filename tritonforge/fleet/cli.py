"""``publish-repo REPOSITORY s3://bucket/prefix``, and what serve-repo needs to serve from a bucket
(thin layers over :mod:`.publish` and :mod:`.mirror`)."""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import FleetError
from .mirror import BucketMirror, Follower
from .progress import Progress, Silent
from .publish import publish_repository

CREDENTIALS_HELP = ("credentials come the standard AWS way: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
                    "and ~/.aws, or an instance/pod role; never on the command line")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="publish-repo",
        description="Publish a model repository to object storage (S3 or S3-compatible) in an order a polling "
        "Triton never loads half of; a second publish of an unchanged repository uploads nothing.",
        epilog=CREDENTIALS_HELP)
    p.add_argument("repo", type=Path, help="model repository folder (what build-repo wrote)")
    p.add_argument("url", help="s3://bucket/prefix")
    p.add_argument("--endpoint-url", default=None, help="an S3-compatible store (MinIO, Ceph, GCS interoperability)")
    p.add_argument("--keep", type=int, default=None, metavar="N",
                   help="keep the N highest versions of each model (and those served); delete older ones from the bucket "
                   "once configs no longer serve them (default: keep every version)")
    p.add_argument("--quiet", action="store_true", help="no per-file progress")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    progress = Silent(0, 0) if args.quiet else Progress(0, 0, sys.stderr)
    try:
        report = publish_repository(args.repo, args.url, endpoint_url=args.endpoint_url, keep=args.keep, progress=progress)
    except FleetError as exc:
        print(f"publish-repo: {exc}", file=sys.stderr)
        return 2
    print(f"publish-repo: {report.line()}")
    return 0


# ---- serve-repo s3://bucket/prefix ----------------------------------------------------------------

def add_bucket_arguments(p: argparse.ArgumentParser) -> None:
    """serve-repo's options for a repository given as s3://bucket/prefix."""
    group = p.add_argument_group("a repository in object storage (REPO given as s3://bucket/prefix)", CREDENTIALS_HELP)
    group.add_argument("--endpoint-url", default=None, help="an S3-compatible store (MinIO, Ceph, ...)")
    group.add_argument("--sync-dir", type=Path, default=None,
                       help="local folder the repository is kept in (default: a temporary folder, removed at exit)")
    group.add_argument("--sync-secs", type=float, default=2.0, help="how often to follow the bucket (default 2)")


@dataclass
class BucketServing:
    """A bucket followed into a local folder while serve-repo serves that folder."""

    local: Path
    follower: Follower
    temporary: bool

    def stop(self) -> None:
        self.follower.stop()
        if self.temporary:
            shutil.rmtree(self.local.parent, ignore_errors=True)


def follow_bucket(url: str, *, sync_dir: Path | None, every: float, endpoint_url: str | None = None) -> BucketServing:
    """Take the published repository once (raises FleetError when that fails), then follow it."""
    # serve-repo logs at INFO: boto3's notes at that level (where it found credentials) are noise there.
    for name in ("boto3", "botocore", "s3transfer"):
        logging.getLogger(name).setLevel(logging.WARNING)
    temporary = sync_dir is None
    local = Path(tempfile.mkdtemp(prefix="tritonforge-bucket-")) / "model_repository" if temporary else Path(sync_dir)
    try:
        mirror = BucketMirror(url, local, endpoint_url=endpoint_url)
        report = mirror.sync()
        if report.waiting:  # a publish is under way: one more round takes what it wrote meanwhile
            mirror.sync()
    except BaseException:
        if temporary:
            shutil.rmtree(local.parent, ignore_errors=True)
        raise
    return BucketServing(local, Follower(mirror, every).start(), temporary)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
