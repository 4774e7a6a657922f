"""The crawler's config file and command line, decided once for every place the crawler runs.

`crawler_config` is a pure function from a DataIngest and a dataset version to the file that
`python -m kubeforge_crawler --config FILE` reads; the operator writes it into a ConfigMap and
starts one Indexed Job of `shards` pods with `crawl_command` (each pod's shard is its
`JOB_COMPLETION_INDEX`), then one pod with `publish_command`. Tests run the same commands as
local processes, so the command a pod runs is the command that was proven to crawl.
"""

from __future__ import annotations

from pydantic import Field

from kubeforge.api.dataingest import (
    CrawlPolicy,
    DataIngest,
    OutputSpec,
    ProcessingSpec,
    SourcesSpec,
    StorageSpec,
)
from kubeforge.api.meta import CamelModel, Int32, defaulted
from kubeforge.api.trainingjob import ObjectUri

CRAWLER_MODULE = "kubeforge_crawler"
SHARD_INDEX_ENV = "JOB_COMPLETION_INDEX"
"""The variable that holds a pod's shard: the index an Indexed Job gives each of its pods."""
EXIT_CONFIG = 2
"""The crawler's exit status for a bad config or arguments: retrying cannot help."""
EXIT_SHARDS_INCOMPLETE = 3
"""The publish stage's exit status when some shard has no completion marker."""
CRAWL_CA_FILE = "/etc/kubeforge-ca/crawl/ca.crt"
"""Where a crawler pod finds `crawl.tls.caBundle` (the operator mounts it there)."""


class CrawlerConfig(CamelModel):
    """Everything the crawler shards and the publish stage of one dataset version need."""

    dataset_uri: ObjectUri = Field(
        description="Where this dataset version is written (s3:// or file://)."
    )
    shards: Int32 = Field(ge=1, description="Crawler processes; hosts are split between them.")
    sources: SourcesSpec = Field(description="Where the crawl starts and what it may visit.")
    crawl: CrawlPolicy = Field(description="How pages are fetched.")
    processing: ProcessingSpec = defaulted(ProcessingSpec, "How pages become documents.")
    output: OutputSpec = defaulted(OutputSpec, "How documents are written.")
    ca_file: str | None = Field(
        default=None,
        min_length=1,
        description="A PEM file of CA certificates trusted besides the system's for the crawled "
        "sites (crawl.tls.caBundle, mounted). Omitted: the system's only.",
    )
    dedup_against: list[ObjectUri] = Field(
        default_factory=list,
        description="Published earlier versions of the same dataset: the dedup stages remove "
        "this version's documents that duplicate one of theirs (from their shard markers and "
        "signatures, which publish keeps).",
    )
    poll_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often a shard with nothing left to fetch looks for URLs other shards "
        "found for it, and for the end of the crawl.",
    )


def dataset_uri(storage: StorageSpec, name: str, version: int) -> str:
    """Where version `version` of the dataset of the DataIngest `name` is written."""
    return f"s3://{storage.bucket}/{storage.prefix}/{name}/v{version}"


def crawler_config(ingest: DataIngest, version: int) -> CrawlerConfig:
    """The crawler config of one dataset version of a DataIngest."""
    if ingest.metadata.name is None:
        raise ValueError("a DataIngest needs a name to have a dataset")
    spec = ingest.spec
    return CrawlerConfig(
        dataset_uri=dataset_uri(spec.storage, ingest.metadata.name, version),
        shards=spec.shards,
        sources=spec.sources,
        crawl=spec.crawl,
        processing=spec.processing,
        output=spec.output,
        ca_file=CRAWL_CA_FILE if spec.crawl.tls.ca_bundle else None,
    )


def crawl_command(config_path: str, python: str = "python") -> list[str]:
    """The command of a crawler shard pod; its shard comes from JOB_COMPLETION_INDEX."""
    return [python, "-m", CRAWLER_MODULE, "--config", config_path]


def dedup_command(
    config_path: str, stage: str, tasks: int, memory_entries: int, python: str = "python"
) -> list[str]:
    """The command of a dedup stage's pod (`dedup-buckets`, `dedup-clusters`, `dedup-filter`);
    its task comes from JOB_COMPLETION_INDEX."""
    return [
        *crawl_command(config_path, python),
        "--stage",
        stage,
        "--tasks",
        str(tasks),
        "--memory-entries",
        str(memory_entries),
    ]


def publish_command(config_path: str, python: str = "python") -> list[str]:
    """The command that deduplicates across shards and publishes, once every shard is done."""
    return [*crawl_command(config_path, python), "--stage", "publish"]
