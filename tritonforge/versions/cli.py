"""``repo-versions REPO NAME [--serve SPEC] [--why TEXT]``: promote or roll back which versions a
model serves (thin CLI over :func:`tritonforge.versions.serve_versions`); without ``--serve``, list them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tritonforge.fleet import FleetError, bucket_copy, is_bucket_url

from .change import serve_versions
from .errors import VersionsError
from .spec import SPEC_HELP
from .status import model_status


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="repo-versions", description=__doc__.split(": ", 1)[1].replace("``", ""))
    p.add_argument("repo", help="model repository (what build-repo wrote), or s3://bucket/prefix (what publish-repo wrote)")
    p.add_argument("name", help="model name")
    p.add_argument("--serve", metavar="SPEC", help=f"versions to serve: {SPEC_HELP}")
    p.add_argument("--why", metavar="TEXT", help="the reason, recorded in the manifest")
    p.add_argument("--endpoint-url", default=None, help="with s3://: an S3-compatible store (MinIO, Ceph, ...)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if not is_bucket_url(args.repo):
        return _run(args, Path(args.repo))
    # In a bucket: change a local copy of its configs and manifest, then publish the change back.
    try:
        with bucket_copy(args.repo, endpoint_url=args.endpoint_url) as copy:
            code = _run(args, copy.local)
        if copy.report is not None and copy.report.changed:
            print(f"repo-versions: published to {copy.report.line()}")
        return code
    except FleetError as exc:
        print(f"repo-versions: {exc}", file=sys.stderr)
        return 2


def _run(args, repo: Path) -> int:
    try:
        if args.serve is None:
            print("\n".join(model_status(repo, args.name).lines()))
            return 0
        change = serve_versions(repo, args.name, args.serve, why=args.why)
    except VersionsError as exc:
        print(f"repo-versions: {exc}", file=sys.stderr)
        return 2
    served = ", ".join(map(str, change.served))
    if not change.files:
        print(f"repo-versions: {change.model} already serves {served} (policy {change.policy}); nothing changed")
    else:
        print(f"repo-versions: {change.model} serves {served} (policy {change.policy}, was {change.previous}); "
              f"wrote {', '.join(str(p.relative_to(repo / change.model)) for p in change.files)}; "
              f"recorded by {change.record['by']} at {change.record['at']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
