"""Object storage behind one small interface: `s3://bucket/prefix` and `file:///directory`.

Datasets, crawl checkpoints and training checkpoints live in object storage. Every component
opens a location with `open_store(uri)` and reads and writes whole objects by key under it; a
write is atomic (a reader sees the old object or the new one, never a part), which is what the
commit protocols of the dataset format rely on. A large object can also be read as byte ranges
(`size`, `get_range`), which lets a reader fetch its parts concurrently, or stream it from an
offset without holding it whole (`read_ranges`).

An S3 object of `KUBEFORGE_S3_MULTIPART_THRESHOLD` bytes or more (default 64 MiB) is written as a
multipart upload of `KUBEFORGE_S3_PART_BYTES` parts (default 64 MiB) sent concurrently: S3 refuses
a single PUT above 5 GB. The object appears only when the upload completes, so the write stays
atomic, and a failed upload is aborted (its parts are dropped, nothing is visible).

An S3 store outlives an outage of the server of a few minutes: a request that cannot connect,
times out or meets a throttling or 5xx answer is tried again, up to `KUBEFORGE_S3_MAX_ATTEMPTS`
times (default 20) with botocore's capped exponential backoff (up to 20 s between tries, about
three minutes in all), so a checkpoint or a dataset part waits for the store instead of failing.
A certificate the endpoint presents and the client refuses is no outage: that request fails at
once (`kubeforge.s3tls`), naming the endpoint and how to give the CA that signed it.

S3 credentials, endpoint and region come from the environment as boto3 reads them
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_REGION`, or workload
identity), never from the URI; a store of someone else's public data can name its own endpoint
and be read unsigned (`open_store(uri, endpoint=..., anonymous=True)`). boto3 is imported only
when an `s3://` store is opened, so the shared core does not depend on it.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig
    from mypy_boto3_s3 import S3Client

SCHEMES = ("s3", "file")
MIB = 1024 * 1024
MULTIPART_THRESHOLD_VARIABLE = "KUBEFORGE_S3_MULTIPART_THRESHOLD"
PART_BYTES_VARIABLE = "KUBEFORGE_S3_PART_BYTES"
MIN_PART_BYTES = 5 * MIB
"""S3's smallest part (but for the last one)."""


class ObjectNotFound(KeyError):
    """No object is stored under the key."""


class ObjectStore(Protocol):
    """Whole objects under a root location, addressed by `/`-separated keys."""

    @property
    def uri(self) -> str:
        """The root location, as given to `open_store`."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes; raises ObjectNotFound when there is none."""
        ...

    def size(self, key: str) -> int:
        """The object's length in bytes; raises ObjectNotFound when there is none."""
        ...

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        """The object's bytes from `start` up to `stop` (exclusive); raises ObjectNotFound when
        there is none and ValueError when it ends before `stop`."""
        ...

    def put(self, key: str, data: bytes) -> None:
        """Stores the object atomically, replacing any object under the key."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under the key."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """The keys that start with `prefix`, sorted."""
        ...

    def delete(self, key: str) -> None:
        """Removes the object; removing a missing object is not an error."""
        ...


def _checked_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in {"", ".", ".."} for part in parts):
        raise ValueError(f"{key!r} is not a relative object key")
    return key


def _whole_range(key: str, start: int, stop: int, data: bytes) -> bytes:
    if len(data) != stop - start:
        raise ValueError(f"{key!r} ends before byte {stop} (read {len(data)} from byte {start})")
    return data


class FileStore:
    """A directory on a local or mounted file system; writes go through a rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._uri = root.as_uri()

    @property
    def uri(self) -> str:
        return self._uri

    def _path(self, key: str) -> Path:
        return self.root / _checked_key(key)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        try:
            with self._path(key).open("rb") as file:
                file.seek(start)
                data = file.read(stop - start)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        return _whole_range(key, start, stop, data)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            Path(temporary).replace(path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = (
            path.relative_to(self.root).as_posix()
            for path in self.root.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        )
        return sorted(key for key in keys if key.startswith(prefix))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


@dataclass(frozen=True)
class Multipart:
    """When and how an S3 object is uploaded in parts."""

    threshold_bytes: int = 64 * MIB
    """Objects of this size or larger are uploaded in parts."""
    part_bytes: int = 64 * MIB
    """The size of a part; raised by boto3 where an object would need more than 10,000 parts."""
    concurrency: int = 8
    """Parts in flight at once."""

    def __post_init__(self) -> None:
        if self.part_bytes < MIN_PART_BYTES:
            raise ValueError(
                f"a multipart upload's part is at least {MIN_PART_BYTES} bytes (5 MiB), "
                f"not {self.part_bytes}"
            )
        if self.threshold_bytes < 1 or self.concurrency < 1:
            raise ValueError("the multipart threshold and concurrency are positive")

    @classmethod
    def from_environment(cls, environment: Mapping[str, str] = os.environ) -> Multipart:
        """The settings named by KUBEFORGE_S3_MULTIPART_THRESHOLD and KUBEFORGE_S3_PART_BYTES
        (in bytes), the defaults for those unset."""
        sizes = {}
        for field, variable in (
            ("threshold_bytes", MULTIPART_THRESHOLD_VARIABLE),
            ("part_bytes", PART_BYTES_VARIABLE),
        ):
            if text := environment.get(variable, "").strip():
                try:
                    sizes[field] = int(text)
                except ValueError:
                    raise ValueError(f"{variable}={text!r} is not a number of bytes") from None
        return cls(**sizes)

    def transfer_config(self) -> TransferConfig:
        # Imported here: only the components that talk to S3 install boto3.
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.threshold_bytes,
            multipart_chunksize=self.part_bytes,
            max_concurrency=self.concurrency,
        )


class S3Store:
    """A prefix of an S3 bucket (any S3-compatible server); a write replaces an object atomically.
    `multipart` defaults to the settings of the environment (`Multipart.from_environment`)."""

    def __init__(
        self, bucket: str, prefix: str, client: S3Client, multipart: Multipart | None = None
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.multipart = multipart or Multipart.from_environment()
        self._uri = f"s3://{bucket}/{self.prefix}".rstrip("/")

    @property
    def uri(self) -> str:
        return self._uri

    def _key(self, key: str) -> str:
        _checked_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def get(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            raise ObjectNotFound(key) from None
        return response["Body"].read()

    def size(self, key: str) -> int:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]
        except self.client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                raise ObjectNotFound(key) from None
            raise

    def get_range(self, key: str, start: int, stop: int) -> bytes:
        if stop <= start:
            return b""  # an HTTP range names at least one byte
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{stop - 1}"
            )
        except self.client.exceptions.NoSuchKey:
            raise ObjectNotFound(key) from None
        except self.client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") == "InvalidRange":  # starts past the end
                raise ValueError(f"{key!r} ends before byte {start}") from None
            raise
        return _whole_range(key, start, stop, response["Body"].read())

    def put(self, key: str, data: bytes) -> None:
        if len(data) < self.multipart.threshold_bytes:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
            return
        # boto3's transfer manager sends the parts concurrently, completes the upload (the object
        # appears, whole) only once every part is in, and aborts it when a part fails.
        self.client.upload_fileobj(
            io.BytesIO(data), self.bucket, self._key(key), Config=self.multipart.transfer_config()
        )

    def exists(self, key: str) -> bool:
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(key), MaxKeys=1)
        return any(item["Key"] == self._key(key) for item in listed.get("Contents", []))

    def list(self, prefix: str = "") -> list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root + prefix
        ):
            keys += [item["Key"].removeprefix(root) for item in page.get("Contents", [])]
        return sorted(keys)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


MAX_ATTEMPTS_VARIABLE = "KUBEFORGE_S3_MAX_ATTEMPTS"
DEFAULT_MAX_ATTEMPTS = 20


def s3_client_from_environment(
    environ: Mapping[str, str] = os.environ,
    *,
    endpoint: str | None = None,
    anonymous: bool = False,
) -> S3Client:
    """An S3 client configured the way boto3 reads its environment (endpoint and CA bundle
    included), which retries through outages of the store (KUBEFORGE_S3_MAX_ATTEMPTS), logging
    when it starts and stops waiting, but not through a refused certificate. `endpoint` replaces
    the environment's; `anonymous` sends requests unsigned (a public bucket).

    Each client has a session of its own: boto3's default session keeps the credentials it
    resolved first for the life of the process, so a store opened after the environment
    changed (another job's credentials, a rotated key) would sign with the old ones."""
    # Imported here: only the components that talk to S3 install boto3.
    import boto3.session
    from botocore import UNSIGNED
    from botocore.config import Config

    from kubeforge.s3tls import refuse_certificates_at_once
    from kubeforge.s3wait import report_waits

    text = environ.get(MAX_ATTEMPTS_VARIABLE, "").strip() or str(DEFAULT_MAX_ATTEMPTS)
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{MAX_ATTEMPTS_VARIABLE}={text!r} is not a positive number of attempts")
    attempts = int(text)
    config = Config(retries={"mode": "standard", "total_max_attempts": attempts})
    if anonymous:
        config = config.merge(Config(signature_version=UNSIGNED))
    client = boto3.session.Session().client("s3", config=config, endpoint_url=endpoint)
    return report_waits(refuse_certificates_at_once(client))


def open_store(uri: str, *, endpoint: str | None = None, anonymous: bool = False) -> ObjectStore:
    """The store at `s3://bucket/prefix` or `file:///absolute/directory`; an S3 store's endpoint
    and signing as `s3_client_from_environment` takes them."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        if parts.netloc not in {"", "localhost"} or not parts.path.startswith("/"):
            raise ValueError(f"{uri!r}: a file URI names an absolute local path (file:///...)")
        return FileStore(Path(parts.path))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"{uri!r}: an s3 URI names a bucket (s3://bucket/prefix)")
        client = s3_client_from_environment(endpoint=endpoint, anonymous=anonymous)
        return S3Store(parts.netloc, parts.path, client)
    raise ValueError(f"{uri!r}: object storage URIs start with {' or '.join(SCHEMES)}://")


RANGE_BYTES = 8 * MIB
"""What `read_ranges` asks for at a time: a few requests per large object, little memory."""


def read_ranges(
    store: ObjectStore, key: str, start: int = 0, range_bytes: int = RANGE_BYTES
) -> Iterator[bytes]:
    """The object's bytes from `start` to its end, one ranged read at a time, so that a large
    object is streamed (never held whole) and can be resumed at any offset."""
    size = store.size(key)
    for offset in range(start, size, range_bytes):
        yield store.get_range(key, offset, min(offset + range_bytes, size))
