"""A DataIngest's bucket on an S3-compatible server, with boto3: provision it, read the dataset's
progress in it, remove the data.

`provision` makes the bucket exist with what `spec.storage` asks for, idempotently: created when
missing (if `create`), versioning on, default encryption, a lifecycle rule that expires the raw
crawl state under each given prefix (merged into the bucket's other rules), public access
blocked. A setting that is off (false or None) is left as the bucket has it: the operator does
not remove what someone else configured. A setting the server does not implement (HTTP 501
NotImplemented, as SeaweedFS answers PutPublicAccessBlock) does not stop the ingest: it is
returned, and the status names it. Any other failure raises `StorageFailure`, whose message (the
server's error code and message, never a credential) is fit for a condition.

`read_dataset` reads the shards' completion markers and the manifest (`kubeforge.dataset`).
`delete_data` removes every object version under a prefix, then the bucket if nothing else is
left in it (SeaweedFS deletes a bucket that still holds objects, so emptiness is checked here).

Credentials come from the DataIngest's Secret (`credentials_from_secret`; the reconcile reads it
through the API) or, without one, from boto3's default chain: the operator's environment or its
workload identity. An https endpoint is verified with `storage.caBundle` when it is given (the
reconcile reads it through the API; `ca_file_from` writes it where boto3 can read it), else with
boto3's default: `AWS_CA_BUNDLE` in the operator's environment, or its own CAs. Every function
here blocks on the network: the reconcile runs them with asyncio.to_thread, so the event loop
never waits for S3.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3
import botocore.exceptions
from botocore.config import Config

from kubeforge.api.dataingest import (
    CrawlCounters,
    DataIngestReason,
    EncryptionMode,
    SecretKeyNames,
    StorageSpec,
)
from kubeforge.api.meta import CaBundle
from kubeforge.dataset import Manifest, read_manifest, read_shard_marker
from kubeforge.s3tls import refuse_certificates_at_once
from kubeforge.storage import ObjectNotFound, S3Store

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType, ServerSideEncryptionType
    from mypy_boto3_s3.type_defs import (
        LifecycleRuleOutputTypeDef,
        LifecycleRuleTypeDef,
        ServerSideEncryptionConfigurationTypeDef,
    )

Reason = DataIngestReason

CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
)
RULE_PREFIX = "kubeforge-raw-"
DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes


@dataclass(frozen=True)
class Credentials:
    """S3 credentials read from a Secret; the secret key never shows in a repr or a log."""

    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)


class StorageFailure(Exception):
    """The bucket cannot be used as asked; `reason` and `message` go into the conditions."""

    def __init__(self, reason: DataIngestReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Provisioned:
    """A bucket ready for the ingest."""

    created: bool
    unsupported: tuple[str, ...]
    """The requested settings the server does not implement, each as `what (Operation)`."""


def credentials_from_secret(ref: SecretKeyNames, data: Mapping[str, str] | None) -> Credentials:
    """The credentials in a Secret's (decoded) data, or why there are none."""
    if data is None:
        raise StorageFailure(Reason.CREDENTIALS_MISSING, f"Secret {ref.name} not found")
    keys = (ref.access_key_id_key, ref.secret_access_key_key)
    missing = [key for key in keys if not data.get(key)]
    if missing:
        raise StorageFailure(
            Reason.CREDENTIALS_MISSING, f"Secret {ref.name} has no key {' or '.join(missing)}"
        )
    return Credentials(data[ref.access_key_id_key], data[ref.secret_access_key_key])


def ca_file_from(bundle: CaBundle, data: Mapping[str, str] | None) -> str:
    """A file holding the PEM bundle in a ConfigMap's or Secret's (decoded) data, or why not.

    boto3 reads CAs only from a file: each bundle is written once, named by its digest.
    """
    source = bundle.config_map_key_ref or bundle.secret_key_ref
    assert source is not None, "a CaBundle has exactly one source"
    kind = "ConfigMap" if bundle.config_map_key_ref else "Secret"
    if data is None:
        raise StorageFailure(Reason.CA_BUNDLE_MISSING, f"{kind} {source.name} not found")
    pem = data.get(source.key, "")
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise StorageFailure(
            Reason.CA_BUNDLE_MISSING,
            f"{kind} {source.name} has no PEM certificate under the key {source.key}",
        )
    directory = Path(tempfile.gettempdir()) / "kubeforge-ca"
    directory.mkdir(exist_ok=True)
    path = directory / f"{hashlib.sha256(pem.encode()).hexdigest()}.pem"
    if not path.exists():
        path.write_text(pem)
    return str(path)


def s3_client(
    storage: StorageSpec, credentials: Credentials | None, ca_file: str | None = None
) -> S3Client:
    """A client for the storage's endpoint and region, with these credentials or boto3's own,
    verifying the endpoint with the CAs in `ca_file` (None: boto3's default); a refused
    certificate fails at once, not after every attempt."""
    session = boto3.session.Session(
        aws_access_key_id=credentials.access_key_id if credentials else None,
        aws_secret_access_key=credentials.secret_access_key if credentials else None,
        region_name=storage.region,
    )
    return refuse_certificates_at_once(
        session.client("s3", endpoint_url=storage.endpoint, config=CLIENT_CONFIG, verify=ca_file)
    )


def _code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _not_implemented(error: botocore.exceptions.ClientError) -> bool:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return _code(error) == "NotImplemented" or status == 501


@contextmanager
def failures(doing: str) -> Iterator[None]:
    """Turns what boto3 raises while `doing` something into a StorageFailure."""
    try:
        yield
    except botocore.exceptions.NoCredentialsError:
        raise StorageFailure(
            Reason.CREDENTIALS_MISSING,
            "no S3 credentials: set storage.credentialsSecretRef, or give the operator "
            "credentials in its environment or a workload identity",
        ) from None
    except botocore.exceptions.ClientError as error:
        message = error.response.get("Error", {}).get("Message") or "no message"
        raise StorageFailure(Reason.STORAGE_ERROR, f"{doing}: {_code(error)}: {message}") from None
    except botocore.exceptions.BotoCoreError as error:
        raise StorageFailure(Reason.STORAGE_ERROR, f"{doing}: {error}") from None


def _bucket_exists(client: S3Client, bucket: str) -> bool:
    with failures(f"reading bucket {bucket}"):
        try:
            client.list_objects_v2(Bucket=bucket, MaxKeys=1)
        except client.exceptions.NoSuchBucket:
            return False
    return True


def _create_bucket(client: S3Client, storage: StorageSpec) -> bool:
    """Creates the bucket; False when it turns out to exist already (created meanwhile)."""
    with failures(f"creating bucket {storage.bucket}"):
        try:
            if storage.region and storage.region != "us-east-1":
                region = cast("BucketLocationConstraintType", storage.region)
                client.create_bucket(
                    Bucket=storage.bucket,
                    CreateBucketConfiguration={"LocationConstraint": region},
                )
            else:
                client.create_bucket(Bucket=storage.bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            return False
    return True


def lifecycle_rule(prefix: str, days: int) -> LifecycleRuleTypeDef:
    """Expires current and noncurrent versions under `prefix` after `days` days."""
    rule_id = RULE_PREFIX + hashlib.sha256(prefix.encode()).hexdigest()[:24]
    return {
        "ID": rule_id,
        "Status": "Enabled",
        "Filter": {"Prefix": prefix},
        "Expiration": {"Days": days},
        "NoncurrentVersionExpiration": {"NoncurrentDays": days},
    }


def _merge_lifecycle(client: S3Client, bucket: str, rules: Sequence[LifecycleRuleTypeDef]) -> None:
    """Puts our rules into the bucket's lifecycle configuration, keeping everyone else's."""
    current: Sequence[LifecycleRuleOutputTypeDef] = []
    try:
        current = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except botocore.exceptions.ClientError as error:
        if _code(error) != "NoSuchLifecycleConfiguration":
            raise
    ours = {rule["ID"] for rule in rules}
    kept: list[Any] = [rule for rule in current if rule.get("ID") not in ours]
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [*kept, *rules]}
    )


def _settings(
    client: S3Client, storage: StorageSpec, raw_prefixes: Sequence[str]
) -> list[tuple[str, Callable[[], object]]]:
    """The requested bucket settings, each as (what, the call that applies it)."""
    bucket = storage.bucket
    settings: list[tuple[str, Callable[[], object]]] = []
    if storage.versioning:
        settings.append(
            (
                "versioning (PutBucketVersioning)",
                lambda: client.put_bucket_versioning(
                    Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
                ),
            )
        )
    if storage.encryption != EncryptionMode.NONE:
        algorithm = cast("ServerSideEncryptionType", storage.encryption.value)
        encryption: ServerSideEncryptionConfigurationTypeDef = {
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": algorithm}}]
        }
        settings.append(
            (
                f"default encryption {algorithm} (PutBucketEncryption)",
                lambda: client.put_bucket_encryption(
                    Bucket=bucket, ServerSideEncryptionConfiguration=encryption
                ),
            )
        )
    days = storage.raw_data_expiration_days
    if days is not None and raw_prefixes:
        rules = [lifecycle_rule(prefix, days) for prefix in raw_prefixes]
        settings.append(
            (
                "lifecycle expiry of raw data (PutBucketLifecycleConfiguration)",
                lambda: _merge_lifecycle(client, bucket, rules),
            )
        )
    if storage.public_access_block:
        settings.append(
            (
                "public access block (PutPublicAccessBlock)",
                lambda: client.put_public_access_block(
                    Bucket=bucket,
                    PublicAccessBlockConfiguration={
                        "BlockPublicAcls": True,
                        "IgnorePublicAcls": True,
                        "BlockPublicPolicy": True,
                        "RestrictPublicBuckets": True,
                    },
                ),
            )
        )
    return settings


def provision(
    storage: StorageSpec,
    credentials: Credentials | None,
    raw_prefixes: Sequence[str],
    ca_file: str | None = None,
) -> Provisioned:
    """Makes the bucket exist with the requested settings (see the module docstring).

    raw_prefixes: keys under which the crawl keeps raw state, expired by the lifecycle rule.
    """
    with failures("connecting to S3"):
        client = s3_client(storage, credentials, ca_file)
    bucket = storage.bucket
    created = False
    if not _bucket_exists(client, bucket):
        if not storage.create:
            raise StorageFailure(
                Reason.BUCKET_MISSING, f"bucket {bucket} does not exist and storage.create is false"
            )
        created = _create_bucket(client, storage)
    unsupported = []
    for what, apply in _settings(client, storage, raw_prefixes):
        with failures(f"setting {what} on bucket {bucket}"):
            try:
                apply()
            except botocore.exceptions.ClientError as error:
                if not _not_implemented(error):
                    raise
                unsupported.append(f"{what}: {_code(error) or 'HTTP 501'}")
    return Provisioned(created=created, unsupported=tuple(unsupported))


def _delete_versions(client: S3Client, bucket: str, prefix: str) -> int:
    """Deletes every version and delete marker under `prefix`; returns how many."""
    deleted = 0
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        entries = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        keys: list[Any] = [{"Key": e["Key"], "VersionId": e["VersionId"]} for e in entries]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            answer = client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            errors = answer.get("Errors", [])
            if errors:
                first = errors[0]
                raise StorageFailure(
                    Reason.STORAGE_ERROR,
                    f"deleting {first.get('Key')} from bucket {bucket}: {first.get('Code')}: "
                    f"{first.get('Message')} ({len(errors)} objects not deleted)",
                )
            deleted += len(batch)
    return deleted


def delete_data(
    storage: StorageSpec, credentials: Credentials | None, prefix: str, ca_file: str | None = None
) -> tuple[int, bool]:
    """Deletes every object version under `prefix`, then the bucket if that left it empty.

    Returns (object versions deleted, whether the bucket is gone).
    """
    bucket = storage.bucket
    with failures(f"deleting {prefix} from bucket {bucket}"):
        client = s3_client(storage, credentials, ca_file)
        try:
            deleted = _delete_versions(client, bucket, prefix)
            left = client.list_object_versions(Bucket=bucket, MaxKeys=1)
            if left.get("Versions") or left.get("DeleteMarkers"):
                return deleted, False
            client.delete_bucket(Bucket=bucket)
        except client.exceptions.NoSuchBucket:
            return 0, True
    return deleted, True


def read_dataset(
    storage: StorageSpec,
    credentials: Credentials | None,
    location: str,
    shards: Sequence[int],
    manifest_wanted: bool,
    ca_file: str | None = None,
) -> tuple[dict[int, CrawlCounters], Manifest | None]:
    """The counters in the given shards' completion markers (those written yet), and the
    manifest when it is wanted and written, of the dataset at `location` in the bucket."""
    markers = {}
    manifest = None
    with failures(f"reading s3://{storage.bucket}/{location}"):
        store = S3Store(storage.bucket, location, s3_client(storage, credentials, ca_file))
        for shard in shards:
            with suppress(ObjectNotFound):
                markers[shard] = read_shard_marker(store, shard).counters
        if manifest_wanted:
            with suppress(ObjectNotFound):
                manifest = read_manifest(store)
    return markers, manifest
