"""DataIngest specs for tests of every tier: a minimal one, a full one, and invalid ones.

Each invalid spec names the field the refusal is about and a fragment that both the API models'
message and the apiserver's message contain, so the same table checks the local validation (unit
tier) and the CRD's schema and CEL rules on a real apiserver (integration tier).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from tests.trainingjob_cases import NOT_A_QUANTITY

MINIMAL_SPEC: dict[str, Any] = {
    "sources": {"seeds": ["https://docs.example.com/"]},
    "crawl": {"userAgent": {"product": "AcmeResearchBot", "contact": "https://acme.example/bot"}},
    "storage": {"bucket": "acme-datasets"},
}

FULL_SPEC: dict[str, Any] = {
    "sources": {
        "seeds": ["https://docs.example.com/", "https://blog.example.com/"],
        "sitemaps": ["https://docs.example.com/sitemap.xml"],
        "allowedDomains": ["example.com"],
        "includePatterns": [r"/(docs|blog)/"],
        "excludePatterns": [r"\?page=\d+$"],
        "warc": {
            "files": ["s3://partner-crawl/2024/part-00000.warc.gz"],
            "prefixes": ["file:///data/wet"],
            "pathIndexes": ["s3://commoncrawl/crawl-data/CC-MAIN-2024-10/wet.paths.gz"],
            "endpoint": "https://s3.amazonaws.com",
            "anonymous": True,
        },
        "maxDepth": 5,
        "maxPages": 100000,
    },
    "crawl": {
        "userAgent": {"product": "AcmeResearchBot", "contact": "mailto:crawl@acme.example"},
        "obeyRobotsTxt": True,
        "robotsCacheSeconds": 7200,
        "perHostConcurrency": 2,
        "minDelaySeconds": 0.5,
        "maxCrawlDelaySeconds": 10,
        "connectTimeoutSeconds": 5,
        "firstByteTimeoutSeconds": 10,
        "totalTimeoutSeconds": 30,
        "maxResponseBytes": 8388608,
        "maxRedirects": 3,
        "allowedContentTypes": ["text/html"],
        "retries": 3,
        "backoffSeconds": 1,
        "maxRetryAfterSeconds": 60,
        "allowedNetworks": ["10.20.0.0/16"],
    },
    "shards": 8,
    "processing": {
        "languages": ["en", "de"],
        "filters": {
            "url": {"domains": ["spam.example"], "words": ["casino"], "substrings": ["xxx"]},
            "language": {"minScore": 0.5},
            "gopherRepetition": {"topNGrams": [{"n": 2, "maxFraction": 0.25}]},
            "gopherQuality": {"minWords": 100, "maxWords": 50000},
            "c4": {"requireTerminalPunctuation": True},
            "fineweb": {"enabled": False},
        },
        "pii": {"emails": True, "phoneNumbers": False},
        "dedup": {"exact": True, "nearDuplicates": True, "threshold": 0.85, "permutations": 256},
    },
    "output": {
        "format": "jsonl",
        "partMaxDocuments": 5000,
        "commitIntervalSeconds": 30,
        "tokenizer": {"vocabSize": 32768, "minFrequency": 2},
    },
    "storage": {
        "bucket": "acme-datasets",
        "prefix": "web/datasets",
        "endpoint": "https://s3.eu-central-1.amazonaws.com",
        "region": "eu-central-1",
        "create": True,
        "versioning": True,
        "encryption": "aws:kms",
        "rawDataExpirationDays": 14,
        "publicAccessBlock": True,
        "credentialsSecretRef": {"name": "s3-writer"},
        "deletionPolicy": "Delete",
    },
    "schedule": "0 3 * * 1",
    "image": "registry.invalid/kubeforge/crawler:1",
    "resources": {"requests": {"cpu": "2", "memory": "4Gi"}},
    "serviceAccountName": "crawler",
}


@dataclass(frozen=True)
class InvalidSpec:
    """A spec that must be refused, the field the refusal names and words its message holds."""

    id: str
    spec: dict[str, Any]
    field: str
    message: str


def minimal_with(section: str, **changes: Any) -> dict[str, Any]:
    """MINIMAL_SPEC with fields of one section replaced (None removes the section)."""
    spec = copy.deepcopy(MINIMAL_SPEC)
    if not changes:
        spec.pop(section)
    else:
        spec[section] = {**spec.get(section, {}), **changes}
    return spec


INVALID_SPECS: tuple[InvalidSpec, ...] = (
    InvalidSpec(
        "no-seed-or-sitemap",
        minimal_with("sources", seeds=[]),
        "spec.sources",
        "at least one seed, sitemap, object prefix or WARC file",
    ),
    InvalidSpec("no-crawl-policy", minimal_with("crawl"), "spec.crawl", "required"),
    InvalidSpec(
        "user-agent-token",
        minimal_with("crawl", userAgent={"product": "Acme Bot/2", "contact": "a@b.example"}),
        "spec.crawl.userAgent.product",
        "should match",
    ),
    InvalidSpec(
        "seed-scheme",
        minimal_with("sources", seeds=["ftp://files.example.com/"]),
        "spec.sources.seeds[0]",
        "should match",
    ),
    InvalidSpec(
        "object-prefix-scheme",
        minimal_with("sources", objectPrefixes=["https://partner.example/data/"]),
        "spec.sources.objectPrefixes[0]",
        "should match",
    ),
    InvalidSpec(
        "warc-file-scheme",
        minimal_with("sources", warc={"files": ["https://data.commoncrawl.org/a.warc.gz"]}),
        "spec.sources.warc.files[0]",
        "should match",
    ),
    InvalidSpec(
        "allowed-network",
        minimal_with(
            "crawl", userAgent=MINIMAL_SPEC["crawl"]["userAgent"], allowedNetworks=["10.0.0/8"]
        ),
        "spec.crawl.allowedNetworks[0]",
        "must be a cidr",
    ),
    InvalidSpec(
        "delays-reversed",
        minimal_with(
            "crawl",
            userAgent=MINIMAL_SPEC["crawl"]["userAgent"],
            minDelaySeconds=20,
            maxCrawlDelaySeconds=10,
        ),
        "spec.crawl.minDelaySeconds",
        "minDelaySeconds must not exceed maxCrawlDelaySeconds",
    ),
    InvalidSpec(
        "word-bounds-reversed",
        {
            **MINIMAL_SPEC,
            "processing": {"filters": {"gopherQuality": {"minWords": 10, "maxWords": 5}}},
        },
        "spec.processing.filters.gopherQuality.minWords",
        "minWords must not exceed maxWords",
    ),
    InvalidSpec(
        "language-score-above-one",
        {**MINIMAL_SPEC, "processing": {"filters": {"language": {"minScore": 1.5}}}},
        "spec.processing.filters.language.minScore",
        "less than or equal to 1",
    ),
    InvalidSpec(
        "negative-duplicate-line-fraction",
        {
            **MINIMAL_SPEC,
            "processing": {"filters": {"gopherRepetition": {"maxDuplicateLineFraction": -0.1}}},
        },
        "spec.processing.filters.gopherRepetition.maxDuplicateLineFraction",
        "greater than or equal to 0",
    ),
    InvalidSpec(
        "n-gram-fraction-above-one",
        {
            **MINIMAL_SPEC,
            "processing": {
                "filters": {"gopherRepetition": {"topNGrams": [{"n": 2, "maxFraction": 2}]}}
            },
        },
        "spec.processing.filters.gopherRepetition.topNGrams[0].maxFraction",
        "less than or equal to 1",
    ),
    InvalidSpec(
        "blocked-domain-with-scheme",
        {
            **MINIMAL_SPEC,
            "processing": {"filters": {"url": {"domains": ["https://spam.example"]}}},
        },
        "spec.processing.filters.url.domains[0]",
        "should match",
    ),
    InvalidSpec(
        "tokenizer-vocabulary-below-the-bytes",
        minimal_with("output", tokenizer={"vocabSize": 300}),
        "spec.output.tokenizer.vocabSize",
        "greater than or equal to 512",
    ),
    InvalidSpec(
        "tokenizer-vocabulary-too-large",
        minimal_with("output", tokenizer={"vocabSize": 2_000_000}),
        "spec.output.tokenizer.vocabSize",
        "less than or equal to 1048576",
    ),
    InvalidSpec(
        "zero-shards", {**MINIMAL_SPEC, "shards": 0}, "spec.shards", "greater than or equal to 1"
    ),
    InvalidSpec(
        "bucket-name",
        {**MINIMAL_SPEC, "storage": {"bucket": "Acme_Datasets"}},
        "spec.storage.bucket",
        "should match",
    ),
    InvalidSpec(
        "deletion-policy",
        {**MINIMAL_SPEC, "storage": {"bucket": "acme", "deletionPolicy": "Orphan"}},
        "spec.storage.deletionPolicy",
        "Retain",
    ),
    InvalidSpec(
        "schedule",
        {**MINIMAL_SPEC, "schedule": "every day"},
        "spec.schedule",
        "should match",
    ),
    InvalidSpec(
        "schedule-minute",
        {**MINIMAL_SPEC, "schedule": "61 * * * *"},
        "spec.schedule",
        "should match",
    ),
    InvalidSpec(
        "ca-bundle-two-sources",
        minimal_with(
            "storage",
            caBundle={"configMapKeyRef": {"name": "ca"}, "secretKeyRef": {"name": "ca"}},
        ),
        "spec.storage.caBundle",
        "exactly one of configMapKeyRef and secretKeyRef",
    ),
    InvalidSpec(
        "ca-bundle-no-source",
        minimal_with("crawl", userAgent=MINIMAL_SPEC["crawl"]["userAgent"], tls={"caBundle": {}}),
        "spec.crawl.tls.caBundle",
        "exactly one of configMapKeyRef and secretKeyRef",
    ),
    InvalidSpec(
        "duplicate-seed",
        minimal_with("sources", seeds=["https://a.example/", "https://a.example/"]),
        "spec.sources.seeds[1]",
        "duplicate value",
    ),
    InvalidSpec(
        "negative-cpu-limit",
        {**MINIMAL_SPEC, "resources": {"limits": {"cpu": -2}}},
        "spec.resources.limits[cpu]",
        NOT_A_QUANTITY,
    ),
    InvalidSpec(
        "negative-storage-request",
        {**MINIMAL_SPEC, "resources": {"requests": {"ephemeral-storage": "-.5Ki"}}},
        "spec.resources.requests[ephemeral-storage]",
        NOT_A_QUANTITY,
    ),
    InvalidSpec(
        "malformed-quantity",
        {**MINIMAL_SPEC, "resources": {"requests": {"memory": "4GB"}}},
        "spec.resources.requests[memory]",
        NOT_A_QUANTITY,
    ),
)
