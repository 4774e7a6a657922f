"""Bucket provisioning and removal against the real S3 server (SeaweedFS on the rig).

Real: the S3 server and boto3. No Kubernetes: these call
`kubeforge_operator.dataingest.provisioning` as the reconcile does (in a thread there), with the
rig's credentials as a Secret would hold them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from kubeforge.api.dataingest import DataIngestReason, StorageSpec
from kubeforge.api.meta import CaBundle
from kubeforge_operator.dataingest.provisioning import (
    Credentials,
    StorageFailure,
    ca_file_from,
    delete_data,
    lifecycle_rule,
    provision,
)
from tests.conftest import Rig
from tests.integration.dataingests import remove_bucket
from tests.tlsproxy import TlsEndpoint

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

RAW = ["datasets/web/v1/state/", "datasets/web/v1/exchange/"]


@pytest.fixture
def credentials(rig: Rig) -> Credentials:
    return Credentials(rig.s3_access_key, rig.s3_secret_key)


@pytest.fixture
def storage(rig: Rig, s3: S3Client) -> Iterator[StorageSpec]:
    """Storage settings for a bucket that does not exist yet (removed afterwards if it does)."""
    spec = StorageSpec(
        bucket=f"kf-prov-{uuid.uuid4().hex[:12]}",
        endpoint=rig.s3_endpoint,
        region=rig.s3_region,
        raw_data_expiration_days=3,
    )
    yield spec
    remove_bucket(s3, spec.bucket)


def test_provisioning_is_idempotent_and_names_what_the_server_lacks(
    s3: S3Client, storage: StorageSpec, credentials: Credentials
) -> None:
    first = provision(storage, credentials, RAW)
    assert first.created
    assert first.unsupported == ("public access block (PutPublicAccessBlock): NotImplemented",)
    again = provision(storage, credentials, RAW)
    assert (again.created, again.unsupported) == (False, first.unsupported)
    assert s3.get_bucket_versioning(Bucket=storage.bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_lifecycle_configuration(Bucket=storage.bucket)["Rules"]
    assert sorted(rule["Filter"]["Prefix"] for rule in rules) == sorted(RAW)
    assert {rule["NoncurrentVersionExpiration"]["NoncurrentDays"] for rule in rules} == {3}


def test_lifecycle_rules_of_others_are_kept(
    s3: S3Client, storage: StorageSpec, credentials: Credentials
) -> None:
    s3.create_bucket(Bucket=storage.bucket)
    theirs = lifecycle_rule("logs/", 30)
    theirs["ID"] = "someone-elses"
    s3.put_bucket_lifecycle_configuration(
        Bucket=storage.bucket, LifecycleConfiguration={"Rules": [theirs]}
    )
    assert not provision(storage, credentials, RAW).created
    rules = s3.get_bucket_lifecycle_configuration(Bucket=storage.bucket)["Rules"]
    assert sorted(rule["ID"] for rule in rules) == sorted(
        ["someone-elses", *(lifecycle_rule(prefix, 3)["ID"] for prefix in RAW)]
    )


def test_a_missing_bucket_that_may_not_be_created_is_reported(
    storage: StorageSpec, credentials: Credentials
) -> None:
    with pytest.raises(StorageFailure) as failure:
        provision(storage.model_copy(update={"create": False}), credentials, RAW)
    assert failure.value.reason == DataIngestReason.BUCKET_MISSING
    assert storage.bucket in failure.value.message


def test_deleting_data_keeps_a_bucket_that_holds_other_data(
    s3: S3Client, storage: StorageSpec, credentials: Credentials
) -> None:
    provision(storage, credentials, RAW)
    for key in ("datasets/web/v1/manifest.json", "datasets/web/v1/manifest.json", "other/data"):
        s3.put_object(Bucket=storage.bucket, Key=key, Body=b"x")
    s3.delete_object(Bucket=storage.bucket, Key="datasets/web/v1/manifest.json")
    # Two versions and a delete marker of ours, one object of someone else's.
    assert delete_data(storage, credentials, "datasets/web/") == (3, False)
    left = s3.list_object_versions(Bucket=storage.bucket)
    assert [entry["Key"] for entry in left.get("Versions", [])] == ["other/data"]
    assert not left.get("DeleteMarkers")
    assert delete_data(storage, credentials, "other/") == (1, True)
    assert delete_data(storage, credentials, "other/") == (0, True)
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_bucket(Bucket=storage.bucket)


def test_an_https_endpoint_is_provisioned_with_the_storage_ca_bundle(
    storage: StorageSpec, credentials: Credentials, tls_s3: TlsEndpoint
) -> None:
    over_tls = storage.model_copy(update={"endpoint": tls_s3.url})
    with pytest.raises(StorageFailure) as refused:
        provision(over_tls, credentials, RAW)
    assert refused.value.reason == DataIngestReason.STORAGE_ERROR
    assert "CERTIFICATE_VERIFY_FAILED" in refused.value.message
    bundle = CaBundle.model_validate({"configMapKeyRef": {"name": "s3-ca"}})
    ca_file = ca_file_from(bundle, {"ca.crt": tls_s3.ca_file.read_text()})
    assert provision(over_tls, credentials, RAW, ca_file).created
    assert delete_data(over_tls, credentials, "datasets/", ca_file) == (0, True)
