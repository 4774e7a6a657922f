"""Crawler configs for the test webs (real limits, scaled down so a whole crawl takes seconds),
and the crawler run: in this process (one fetch, or every shard of a crawl), or as the processes
the operator's pods run."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest

from kubeforge.api.dataingest import CrawlPolicy, DropReason
from kubeforge.crawlconfig import SHARD_INDEX_ENV, CrawlerConfig, crawl_command, publish_command
from kubeforge.dataset import ShardMarker
from kubeforge.storage import open_store
from kubeforge_crawler.fetch import Downloader, Refused, Response
from kubeforge_crawler.shard import ShardCrawler
from tests.conftest import Rig
from tests.testweb import PRODUCT, LocalWeb

# The test web's pages are pydoc renders: code-heavy (curly brackets), with repeated lines
# ("Methods defined here:"), so of FineWeb's filters only a relaxed Gopher quality runs; every
# module page passes it, the thin page not (GopherQuality:gopher_short_doc). Language is off: the
# thin page's score sits at the threshold. tests/workloads/test_crawler_filters.py runs the
# published defaults.
FILTERS = {
    "language": {"enabled": False},
    "gopherRepetition": {"enabled": False},
    "gopherQuality": {
        "minWords": 20,
        "minAlphabeticWordFraction": 0.5,
        "maxSymbolRatio": 0.5,
        "minMeanWordLength": 2,
        "maxMeanWordLength": 20,
    },
    "c4": {"enabled": False},
    "fineweb": {"enabled": False},
}
THIN_PAGE_DROP = "GopherQuality:gopher_short_doc"


class Web(Protocol):
    """A test web: the loopback networks its hosts are on."""

    @property
    def allowed_networks(self) -> list[str]: ...


def crawl_policy(web: Web, **changes: Any) -> dict[str, Any]:
    return {
        "userAgent": {"product": PRODUCT, "contact": "https://kubeforge.invalid/tests"},
        "minDelaySeconds": 0.02,
        "retries": 1,
        "backoffSeconds": 0.05,
        "connectTimeoutSeconds": 1,
        "firstByteTimeoutSeconds": 1,
        "totalTimeoutSeconds": 1.5,
        "maxResponseBytes": 2 * 1024 * 1024,
        "allowedNetworks": web.allowed_networks,
        **changes,
    }


def web_config(
    web: LocalWeb,
    dataset_uri: str,
    shards: int,
    *,
    seeds: list[str] | None = None,
    domains: list[str] | None = None,
    crawl: dict[str, Any] | None = None,
) -> CrawlerConfig:
    """A crawl of the test web from docs-a's index (or `seeds`)."""
    return CrawlerConfig.model_validate(
        {
            "datasetUri": dataset_uri,
            "shards": shards,
            "sources": {
                "seeds": seeds or [web.url("docs-a", "/")],
                "allowedDomains": domains or web.crawled_domains,
                "maxDepth": 4,
            },
            "crawl": crawl or crawl_policy(web),
            "processing": {"filters": FILTERS},
            "output": {
                "partMaxDocuments": 5,
                "commitIntervalSeconds": 0.3,
                "tokenizer": {"vocabSize": 512},
            },
            "pollSeconds": 0.1,
        }
    )


def crawl_in_process(config: CrawlerConfig) -> list[ShardMarker]:
    """Runs every shard of a crawl concurrently in this process."""
    store = open_store(config.dataset_uri)

    async def every_shard() -> list[ShardMarker]:
        crawlers = [ShardCrawler(config, shard, store) for shard in range(config.shards)]
        return list(await asyncio.gather(*(crawler.run() for crawler in crawlers)))

    return asyncio.run(every_shard())


def fetch(policy: CrawlPolicy, url: str, ca_file: str | None = None) -> Response:
    """One GET with the crawl policy (and the extra CAs in `ca_file`)."""

    async def get() -> Response:
        async with Downloader(policy, ca_file) as downloader:
            return await downloader.get(url, media_types=policy.allowed_content_types)

    return asyncio.run(get())


def refusal(policy: CrawlPolicy, url: str, ca_file: str | None = None) -> DropReason:
    """Why the GET is refused (it must be)."""
    with pytest.raises(Refused) as refused:
        fetch(policy, url, ca_file)
    return refused.value.reason


def s3_environment(rig: Rig, **changes: str) -> dict[str, str]:
    """The variables a crawler pod reads its object store from, for the rig's S3."""
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": rig.s3_endpoint,
        "AWS_ACCESS_KEY_ID": rig.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": rig.s3_secret_key,
        "AWS_REGION": rig.s3_region,
        **changes,
    }


def run_shard(
    config_path: Path, shard: int, environment: Mapping[str, str], logs: Path
) -> subprocess.Popen[bytes]:
    """A crawler shard as the operator starts it: the same command, config and variables."""
    with (logs / f"shard-{shard}.log").open("ab") as log:
        return subprocess.Popen(
            crawl_command(str(config_path), python=sys.executable),
            env={**environment, SHARD_INDEX_ENV: str(shard)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def run_publish(config_path: Path, environment: Mapping[str, str]) -> None:
    """The publish stage as the operator starts it, once every shard is done; it must succeed."""
    publisher = subprocess.run(
        publish_command(str(config_path), python=sys.executable),
        env=environment,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert publisher.returncode == 0, publisher.stderr.decode()
