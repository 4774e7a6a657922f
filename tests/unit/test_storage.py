"""The multipart settings of S3 stores, as the environment gives them."""

from __future__ import annotations

import pytest

from kubeforge.storage import (
    MAX_ATTEMPTS_VARIABLE,
    MIB,
    MULTIPART_THRESHOLD_VARIABLE,
    PART_BYTES_VARIABLE,
    Multipart,
    s3_client_from_environment,
)


def test_unset_variables_keep_the_defaults_and_set_ones_replace_them() -> None:
    assert Multipart.from_environment({}) == Multipart(64 * MIB, 64 * MIB)
    assert Multipart.from_environment({PART_BYTES_VARIABLE: " "}) == Multipart()
    settings = Multipart.from_environment(
        {MULTIPART_THRESHOLD_VARIABLE: "1000", PART_BYTES_VARIABLE: str(8 * MIB)}
    )
    assert (settings.threshold_bytes, settings.part_bytes) == (1000, 8 * MIB)
    config = settings.transfer_config()
    assert (config.multipart_threshold, config.multipart_chunksize) == (1000, 8 * MIB)


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({PART_BYTES_VARIABLE: "64MiB"}, "KUBEFORGE_S3_PART_BYTES='64MiB' is not a number"),
        ({PART_BYTES_VARIABLE: str(MIB)}, "a multipart upload's part is at least 5242880 bytes"),
        ({MULTIPART_THRESHOLD_VARIABLE: "0"}, "threshold and concurrency are positive"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(
    environment: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Multipart.from_environment(environment)


def test_an_s3_client_retries_through_an_outage_as_configured() -> None:
    environment = {"AWS_REGION": "us-east-1"}
    default = s3_client_from_environment(environment)
    retries = vars(default.meta.config)["retries"]  # botocore sets its options as attributes
    assert (retries["mode"], retries["total_max_attempts"]) == ("standard", 20)
    fewer = s3_client_from_environment({**environment, MAX_ATTEMPTS_VARIABLE: "3"})
    assert vars(fewer.meta.config)["retries"]["total_max_attempts"] == 3
    with pytest.raises(ValueError, match="KUBEFORGE_S3_MAX_ATTEMPTS='none' is not a positive"):
        s3_client_from_environment({MAX_ATTEMPTS_VARIABLE: "none"})


def test_each_client_signs_with_the_credentials_of_the_environment_it_was_opened_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """boto3's default session would keep the first credentials it resolved in the process."""
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    signed = []
    for key in ("first-key", "second-key"):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        client = s3_client_from_environment()
        signed.append(client.generate_presigned_url("get_object", {"Bucket": "b", "Key": "k"}))
    assert "first-key" in signed[0]
    assert "second-key" in signed[1]
