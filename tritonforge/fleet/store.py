"""One repository's objects in S3 (or an S3-compatible store) through boto3.

Credentials come the standard AWS way (environment, ``AWS_PROFILE`` and the shared files, an
instance or pod role): boto3's own chain, never the command line. Every boto3 failure becomes a
one-line :class:`FleetError` naming the bucket and the cause.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from .errors import FleetError
from .index import TOOL
from .location import BucketUrl

# Object metadata written with every file: its sha256, and who put it (a prefix's foreign objects
# are told from those of an interrupted publish by this).
SHA_KEY = "sha256"
BY_KEY = "published-by"
CHUNK = 1 << 20


class Store:
    def __init__(self, url: BucketUrl, endpoint_url: str | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.url = url
        self.endpoint_url = endpoint_url
        with self._translated("connect"):
            self.client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, config=Config(retries={"max_attempts": 5, "mode": "standard"}))

    @contextlib.contextmanager
    def _translated(self, what: str):
        from botocore import exceptions as bx
        from boto3.exceptions import S3UploadFailedError

        try:
            yield
        except bx.NoCredentialsError:
            raise FleetError(f"{self.url}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                             f"or AWS_PROFILE); none are taken on the command line") from None
        except bx.EndpointConnectionError as exc:
            raise FleetError(f"{self.url}: cannot reach the storage endpoint ({exc})") from None
        except bx.ClientError as exc:
            error = exc.response.get("Error", {})
            raise FleetError(f"{self.url}: {what}: {error.get('Code', '?')}: {error.get('Message', exc)}") from None
        except (bx.BotoCoreError, S3UploadFailedError) as exc:
            raise FleetError(f"{self.url}: {what}: {exc}") from None

    def list(self) -> dict[str, int]:
        """{rel: size} of every object under the prefix."""
        found = {}
        prefix = self.url.key("") if self.url.prefix else ""
        with self._translated("list"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.url.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    found[self.url.rel(item["Key"])] = item["Size"]
        return found

    def read(self, rel: str) -> bytes | None:
        """The object's bytes, or None where there is none."""
        from botocore.exceptions import ClientError

        with self._translated(f"read {rel}"):
            try:
                return self.client.get_object(Bucket=self.url.bucket, Key=self.url.key(rel))["Body"].read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise

    def metadata(self, rel: str) -> dict[str, str]:
        with self._translated(f"read {rel}"):
            return self.client.head_object(Bucket=self.url.bucket, Key=self.url.key(rel)).get("Metadata", {})

    def _extra(self, sha: str) -> dict:
        return {"Metadata": {SHA_KEY: sha, BY_KEY: TOOL}}

    def put_bytes(self, rel: str, data: bytes) -> None:
        sha = hashlib.sha256(data).hexdigest()
        with self._translated(f"upload {rel}"):
            self.client.put_object(Bucket=self.url.bucket, Key=self.url.key(rel), Body=data, **self._extra(sha))

    def upload(self, rel: str, path: Path, sha: str, callback=None) -> None:
        """Upload one file (multipart above boto3's threshold); ``callback(bytes)`` reports progress."""
        with self._translated(f"upload {rel}"):
            self.client.upload_file(str(path), self.url.bucket, self.url.key(rel), ExtraArgs=self._extra(sha),
                                    Callback=callback)

    def download(self, rel: str, path: Path, sha: str) -> bool:
        """Write the object to ``path`` (streamed); whether its content has the expected ``sha``.
        A missing object counts as a mismatch: a publish is removing or replacing it."""
        from botocore.exceptions import ClientError

        digest = hashlib.sha256()
        with self._translated(f"download {rel}"):
            try:
                body = self.client.get_object(Bucket=self.url.bucket, Key=self.url.key(rel))["Body"]
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return False
                raise
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as handle:
                for chunk in body.iter_chunks(CHUNK):
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        return digest.hexdigest() == sha

    def delete(self, rels) -> None:
        rels = list(rels)
        for start in range(0, len(rels), 1000):  # S3's batch limit
            batch = [{"Key": self.url.key(rel)} for rel in rels[start:start + 1000]]
            with self._translated("delete"):
                answer = self.client.delete_objects(Bucket=self.url.bucket, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise FleetError(f"{self.url}: delete {first.get('Key')}: {first.get('Code')}: {first.get('Message')}")
