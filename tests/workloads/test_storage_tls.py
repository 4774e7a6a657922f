"""Object storage over HTTPS with a private CA: a crawl published, checkpoints saved and restored.

Real: the rig's S3 server (SeaweedFS) behind a TLS-terminating proxy whose certificate a CA made
by the tests signed (`tests.tlsproxy`, `tests.certificates`); crawler processes started with the
operator's command and the variables its pods get (`AWS_CA_BUNDLE`, as `storage.caBundle` sets
it), crawling an HTTPS site of another private CA (`caFile`, as `crawl.tls.caBundle` sets it);
the trainer's checkpoint writer and restore over `open_store`, as the trainer opens its store.
Without the CA, the endpoint's certificate is refused at the first attempt, with the store's
default attempts (a refused certificate is not an outage to wait out).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
import yaml

from kubeforge.crawlconfig import CrawlerConfig, publish_command
from kubeforge.dataset import iter_documents, read_manifest
from kubeforge.s3tls import CertificateRefused
from kubeforge.storage import MAX_ATTEMPTS_VARIABLE, S3Store, open_store
from kubeforge_trainer.checkpoint import Checkpoints, CheckpointWriter
from tests.conftest import Rig
from tests.tlsproxy import TlsEndpoint
from tests.tlsweb import ADDRESSES, TlsWeb
from tests.workloads.crawls import FILTERS, crawl_policy, run_shard, s3_environment

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration


def environment(rig: Rig, tls_s3: TlsEndpoint, *, trust: bool) -> dict[str, str]:
    """A pod's variables for the S3 endpoint over TLS, with its CA bundle if `trust`, and the
    store's default attempts: a refused certificate is not retried like an outage."""
    bundle = {"AWS_CA_BUNDLE": str(tls_s3.ca_file)} if trust else {}
    return {**s3_environment(rig, AWS_ENDPOINT_URL=tls_s3.url), **bundle}


def crawl_config(web: TlsWeb, dataset_uri: str, path: Path) -> Path:
    """A one-shard crawl of the valid HTTPS site into `dataset_uri`, written to `path`."""
    config = CrawlerConfig.model_validate(
        {
            "datasetUri": dataset_uri,
            "shards": 1,
            "sources": {"seeds": [web.url("valid", "/")], "allowedDomains": [ADDRESSES["valid"]]},
            "crawl": crawl_policy(web),
            "processing": {"filters": FILTERS},
            "caFile": str(web.ca_file),
            "pollSeconds": 0.1,
        }
    )
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True)))
    return path


def test_a_crawl_is_published_to_s3_over_tls_with_the_storage_ca(
    rig: Rig, tls_s3: TlsEndpoint, tls_web: TlsWeb, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    config = crawl_config(tls_web, f"s3://{bucket}/datasets/tls/v1", tmp_path / "crawler.yaml")
    env = environment(rig, tls_s3, trust=True)
    shard = run_shard(config, 0, env, tmp_path)
    assert shard.wait(timeout=120) == 0, (tmp_path / "shard-0.log").read_text()
    publisher = subprocess.run(
        publish_command(str(config), python=sys.executable), env=env, capture_output=True
    )
    assert publisher.returncode == 0, publisher.stderr.decode()
    store = S3Store(bucket, "datasets/tls/v1", s3)  # read back over plain HTTP, behind the proxy
    documents = list(iter_documents(store, read_manifest(store)))
    assert [document.url for document in documents] == [tls_web.url("valid", "/")]


def test_without_the_storage_ca_the_crawler_refuses_the_endpoint(
    rig: Rig, tls_s3: TlsEndpoint, tls_web: TlsWeb, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    config = crawl_config(tls_web, f"s3://{bucket}/datasets/tls/v1", tmp_path / "crawler.yaml")
    shard = run_shard(config, 0, environment(rig, tls_s3, trust=False), tmp_path)
    assert shard.wait(timeout=120) != 0  # retried 20 times, it would take minutes
    log = (tmp_path / "shard-0.log").read_text()
    assert f"the S3 endpoint {tls_s3.url} presented a certificate that was refused" in log
    assert "CERTIFICATE_VERIFY_FAILED" in log
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0, "nothing was written"


def test_checkpoints_are_saved_and_restored_over_tls_with_the_ca(
    rig: Rig, tls_s3: TlsEndpoint, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environment(rig, tls_s3, trust=True).items():
        monkeypatch.setenv(name, value)
    uri = f"s3://{bucket}/checkpoints/run"
    writer = CheckpointWriter(Checkpoints(open_store(uri), keep=2), world_size=1)
    for step in (10, 20):
        writer.save(step, {"step": step, "weights": torch.full((64,), float(step))}, wait=True)
    writer.close()
    restored = Checkpoints(open_store(uri), keep=2)  # a restarted trainer's fresh client
    assert restored.newest_valid() == 20
    state = restored.load(20)
    assert state["step"] == 20
    assert torch.equal(state["weights"], torch.full((64,), 20.0))


def test_without_the_ca_a_checkpoint_cannot_be_written(
    rig: Rig, tls_s3: TlsEndpoint, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environment(rig, tls_s3, trust=False).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.delenv(MAX_ATTEMPTS_VARIABLE, raising=False)
    store = open_store(f"s3://{bucket}/checkpoints/run")
    assert isinstance(store, S3Store)
    sent: list[int] = []
    store.client.meta.events.register("before-send.s3", lambda **_: sent.append(1))
    with pytest.raises(CertificateRefused, match="CERTIFICATE_VERIFY_FAILED"):
        Checkpoints(store, keep=2).commit(1, b"state", world_size=1)
    assert len(sent) == 1, "the refused certificate was tried once, not as an outage"
