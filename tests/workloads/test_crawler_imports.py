"""Partner data imported from an object-storage prefix, through the same filters and dedup.

Real: the rig's S3 server (SeaweedFS) holding a partner's objects (JSON lines, gzip JSON lines,
Parquet, plain text and an object of an unknown kind) and the dataset, and crawler processes
started with the commands the operator puts into its pods (two shards, then the publish stage),
writing Parquet parts. Nothing is faked. The documents are pydoc's plain-text documentation of
standard-library modules, with a planted exact and near duplicate, a record too short to keep and
one with personal data.
"""

from __future__ import annotations

import collections
import gzip
import io
import itertools
import json
import os
import pydoc
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
import yaml

from kubeforge.api.dataingest import DropReason, OutputFormat
from kubeforge.crawlconfig import SHARD_INDEX_ENV, CrawlerConfig, crawl_command
from kubeforge.dataset import iter_documents, part_format, read_manifest, total_counters
from kubeforge.storage import S3Store
from tests.conftest import Rig
from tests.workloads.crawls import FILTERS, THIN_PAGE_DROP, run_publish

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

SHARDS = 2
PII_EMAIL = "partner-contact@data.example"


def module_text(name: str) -> str:
    return pydoc.plain(pydoc.render_doc(name))


def near_copy(text: str, every: int = 150) -> str:
    """The text with one word in every `every` replaced."""
    counter = itertools.count()
    return re.sub(
        r"[A-Za-z]{3,}",
        lambda word: "lorem" if next(counter) % every == every - 1 else word.group(0),
        text,
    )


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def parquet(records: list[dict[str, Any]]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), sink)
    return sink.getvalue()


def s3_environment(rig: Rig) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": rig.s3_endpoint,
        "AWS_ACCESS_KEY_ID": rig.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": rig.s3_secret_key,
        "AWS_REGION": rig.s3_region,
    }


def test_objects_under_a_prefix_become_deduplicated_documents(
    rig: Rig, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    texts = {name: module_text(name) for name in ("json", "csv", "heapq", "shlex", "textwrap")}
    pii = f"{texts['shlex']}\nQuestions about this data go to {PII_EMAIL}."
    objects = {
        "partner/a.jsonl.gz": gzip.compress(
            jsonl(
                [
                    {"text": texts["json"], "url": "https://partner.example/json", "title": "J"},
                    {"text": texts["csv"]},
                    {"text": "Too short to keep."},
                    {"text": pii},
                ]
            )
        ),
        "partner/b.parquet": parquet(
            [
                {"text": texts["heapq"], "url": "https://partner.example/heapq", "title": "Heaps"},
                {"text": texts["csv"], "url": "https://partner.example/csv-again"},
            ]
        ),
        "partner/more/c.jsonl": jsonl([{"text": near_copy(texts["json"])}]),
        "partner/more/d.txt": texts["textwrap"].encode(),
        "partner/e.bin": b"\x00\x01",
    }
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    config = CrawlerConfig.model_validate(
        {
            "datasetUri": f"s3://{bucket}/datasets/partner/v1",
            "shards": SHARDS,
            "sources": {"objectPrefixes": [f"s3://{bucket}/partner"]},
            "crawl": {"userAgent": {"product": "KubeforgeTest", "contact": "tests@kubeforge.dev"}},
            "processing": {"filters": FILTERS},
            "output": {"format": "parquet", "partMaxDocuments": 2, "commitIntervalSeconds": 0.3},
            "pollSeconds": 0.1,
        }
    )
    config_path = tmp_path / "crawler.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True)))
    environment = s3_environment(rig)
    shards = [
        subprocess.Popen(
            crawl_command(str(config_path), python=sys.executable),
            env={**environment, SHARD_INDEX_ENV: str(shard)},
            stderr=subprocess.PIPE,
        )
        for shard in range(SHARDS)
    ]
    for shard in shards:
        _, errors = shard.communicate(timeout=120)
        assert shard.returncode == 0, errors.decode()
    run_publish(config_path, environment)

    store = S3Store(bucket, "datasets/partner/v1", s3)
    manifest = read_manifest(store)
    assert {part_format(part.key) for part in manifest.parts} == {OutputFormat.PARQUET}
    documents = list(iter_documents(store, manifest))
    assert len({document.content_hash for document in documents}) == len(documents) == 5
    prefix = f"s3://{bucket}/partner"
    # Objects are split between the shards by a hash of their URI (the bucket name is random),
    # so which copy of a pair comes first, and is kept, varies; exactly one of each is kept.
    by_module = collections.defaultdict(list)
    for document in documents:
        module = document.text.split("\n", 1)[0].rsplit(" ", 1)[-1]
        by_module[module].append((document.url, document.title))
    assert by_module == {
        "json": [by_module["json"][0]],
        "csv": [by_module["csv"][0]],
        "heapq": [("https://partner.example/heapq", "Heaps")],
        "shlex": [(f"{prefix}/a.jsonl.gz#3", None)],
        "textwrap": [(f"{prefix}/more/d.txt", None)],
    }
    assert by_module["json"][0] in {
        ("https://partner.example/json", "J"),
        (f"{prefix}/more/c.jsonl#0", None),
    }
    assert by_module["csv"][0] in {
        (f"{prefix}/a.jsonl.gz#1", None),
        ("https://partner.example/csv-again", None),
    }
    scrubbed = [document.text for document in documents if "Questions about" in document.text]
    assert scrubbed
    assert PII_EMAIL not in scrubbed[0]
    assert "<EMAIL>" in scrubbed[0]

    counters = total_counters(manifest)
    dropped = collections.Counter(counters.dropped_by_reason)
    assert dropped[THIN_PAGE_DROP] == 1
    assert dropped[DropReason.UNSUPPORTED_CONTENT_TYPE] == 1
    assert counters.duplicates_removed == 2, "the csv copy and the near copy of json"
    assert counters.documents_kept == 5
