"""Beyond one machine: a model repository in object storage, read back by servers.

- :func:`publish_repository` (:mod:`.publish`): upload what changed, in an order a polling Triton
  never loads half of (``publish-repo``); :class:`PublishReport` says what it did.
- :class:`BucketMirror` (:mod:`.mirror`): keep a local folder in step with a published repository,
  atomically per version (``serve-repo s3://...``); :class:`Follower` does it every few seconds.
- :func:`bucket_copy` (:mod:`.copy`): change a published repository's configs through a local
  copy and publish the change back (``repo-versions s3://...``).

    publish_repository(Path("model_repository"), "s3://models/prod", keep=3)

:mod:`.store` is the only module that talks to S3 (boto3); :mod:`.index` is the published index.
"""
from .copy import BucketCopy, bucket_copy
from .errors import FleetError
from .location import BucketUrl, is_bucket_url
from .mirror import BucketMirror, Follower, SyncReport
from .publish import PublishReport, publish_repository

__all__ = ["BucketCopy", "BucketMirror", "BucketUrl", "FleetError", "Follower", "PublishReport", "SyncReport",
           "bucket_copy", "is_bucket_url", "publish_repository"]
