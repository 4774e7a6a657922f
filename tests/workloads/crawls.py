"""Crawler configs for the test web: real limits, scaled down so a whole crawl takes seconds."""

from __future__ import annotations

from typing import Any

from kubeforge.crawlconfig import CrawlerConfig
from tests.testweb import PRODUCT, LocalWeb

# The test web's pages are pydoc renders: code-heavy, with repeated lines ("Methods defined
# here:"), so the quality rules are relaxed; every module page passes them, the thin page not.
QUALITY = {
    "minWords": 20,
    "maxDuplicateLineFraction": 0.9,
    "minAlphabeticWordFraction": 0.5,
    "maxSymbolRatio": 0.5,
    "minMeanWordLength": 2,
    "maxMeanWordLength": 20,
}


def crawl_policy(web: LocalWeb, **changes: Any) -> dict[str, Any]:
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
            "processing": {"quality": QUALITY},
            "output": {"partMaxDocuments": 5, "commitIntervalSeconds": 0.3},
            "pollSeconds": 0.1,
        }
    )
