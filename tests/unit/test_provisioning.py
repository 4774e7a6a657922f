"""The pure parts of bucket provisioning: credentials from a Secret's data, lifecycle rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeforge.api.dataingest import DataIngestReason, SecretKeyNames
from kubeforge.api.meta import CaBundle
from kubeforge_operator.dataingest.provisioning import (
    Credentials,
    StorageFailure,
    ca_file_from,
    credentials_from_secret,
    lifecycle_rule,
)

REF = SecretKeyNames(name="s3-writer")


def test_credentials_come_from_the_named_keys_and_never_show() -> None:
    data = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}
    credentials = credentials_from_secret(REF, data)
    assert credentials == Credentials("AKIDEXAMPLE", "s3cr3t-value")
    assert "s3cr3t-value" not in repr(credentials)
    custom = SecretKeyNames(name="s", access_key_id_key="id", secret_access_key_key="key")
    assert credentials_from_secret(custom, {"id": "a", "key": "b"}) == Credentials("a", "b")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "Secret s3-writer not found"),
        ({"AWS_ACCESS_KEY_ID": "a"}, "Secret s3-writer has no key AWS_SECRET_ACCESS_KEY"),
        ({}, "has no key AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY"),
    ],
)
def test_missing_credentials_are_named(data: dict[str, str] | None, message: str) -> None:
    with pytest.raises(StorageFailure) as failure:
        credentials_from_secret(REF, data)
    assert failure.value.reason == DataIngestReason.CREDENTIALS_MISSING
    assert message in failure.value.message


def test_lifecycle_rules_are_named_after_their_prefix() -> None:
    rule = lifecycle_rule("datasets/web/v1/state/", 7)
    assert rule == lifecycle_rule("datasets/web/v1/state/", 7)
    assert rule["ID"] != lifecycle_rule("datasets/web/v1/exchange/", 7)["ID"]
    assert rule["ID"].startswith("kubeforge-raw-")
    assert rule["Filter"] == {"Prefix": "datasets/web/v1/state/"}
    assert rule["Expiration"] == {"Days": 7}


PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_a_ca_bundle_is_written_once_where_boto3_reads_it() -> None:
    bundle = CaBundle.model_validate({"secretKeyRef": {"name": "s3-ca", "key": "bundle.pem"}})
    path = ca_file_from(bundle, {"bundle.pem": PEM})
    assert Path(path).read_text() == PEM
    assert ca_file_from(bundle, {"bundle.pem": PEM}) == path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "ConfigMap s3-ca not found"),
        ({"other": PEM}, "ConfigMap s3-ca has no PEM certificate under the key ca.crt"),
        ({"ca.crt": "not a certificate"}, "has no PEM certificate"),
    ],
)
def test_a_missing_ca_bundle_is_named(data: dict[str, str] | None, message: str) -> None:
    bundle = CaBundle.model_validate({"configMapKeyRef": {"name": "s3-ca"}})
    with pytest.raises(StorageFailure) as failure:
        ca_file_from(bundle, data)
    assert failure.value.reason == DataIngestReason.CA_BUNDLE_MISSING
    assert message in failure.value.message
