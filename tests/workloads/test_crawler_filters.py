"""FineWeb's filters at their published defaults, end to end: each rule's drops are counted
under its own reason in the published version's counters (what the operator copies into the
DataIngest status).

Real: the rig's S3 server (SeaweedFS) holding a partner's JSON lines and the dataset, and a
crawler shard and the publish stage started with the commands the operator puts into its pods.
The documents are real prose (tests/filtertexts.py), each changed to trip one rule.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from kubeforge.crawlconfig import CrawlerConfig
from kubeforge.dataset import iter_documents, read_manifest, total_counters
from kubeforge.storage import S3Store
from tests.conftest import Rig
from tests.filtertexts import BLOCKLIST, PROSE, TRIPPING, URL
from tests.workloads.crawls import run_publish, run_shard, s3_environment

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration


def test_each_rule_drops_under_its_own_reason_in_the_published_counters(
    rig: Rig, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    records = [{"text": PROSE, "url": URL}] + [
        {"text": tripping.text, "url": tripping.url} for tripping in TRIPPING
    ]
    lines = "".join(json.dumps(record) + "\n" for record in records)
    s3.put_object(Bucket=bucket, Key="partner/documents.jsonl", Body=lines.encode())
    config = CrawlerConfig.model_validate(
        {
            "datasetUri": f"s3://{bucket}/datasets/filtered/v1",
            "shards": 1,
            "sources": {"objectPrefixes": [f"s3://{bucket}/partner"]},
            "crawl": {"userAgent": {"product": "KubeforgeTest", "contact": "tests@kubeforge.dev"}},
            # The published defaults, with blocklists of our own (none ships).
            "processing": {"languages": ["en"], "filters": {"url": BLOCKLIST}},
            "output": {"commitIntervalSeconds": 0.3},
            "pollSeconds": 0.1,
        }
    )
    config_path = tmp_path / "crawler.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True)))
    environment = s3_environment(rig)
    shard = run_shard(config_path, 0, environment, tmp_path)
    assert shard.wait(timeout=120) == 0, (tmp_path / "shard-0.log").read_text()
    run_publish(config_path, environment)

    store = S3Store(bucket, "datasets/filtered/v1", s3)
    manifest = read_manifest(store)
    counters = total_counters(manifest)
    assert counters.dropped_by_reason == {tripping.reason: 1 for tripping in TRIPPING}
    assert counters.documents_kept == 1
    (kept,) = iter_documents(store, manifest)
    assert kept.url == URL
    assert kept.language == "en"
    # C4 removes citation markers ([1], and so also the essay's a[0], as datatrove's does).
    assert kept.text == re.sub(r"\[\d*\]", "", PROSE)
