"""A DataIngest as local processes: one crawler process per shard, then the publish stage.

The config and the commands are the operator's (`kubeforge.crawlconfig`: `crawler_config`,
`crawl_command`, `publish_command`); each shard gets its index in JOB_COMPLETION_INDEX as an
Indexed Job's pod does. Only the dataset's location differs when no S3 endpoint is named: the
embedded `file://` store (`local_state`). A shard that fails is started again up to
SHARD_RETRIES times (as the crawl Job's backoffLimitPerIndex allows) and resumes from its last
commit; a rerun skips shards with a completion marker, and a published dataset is not crawled
again.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from kubeforge.api.dataingest import CrawlCounters, DataIngest
from kubeforge.cli.local_state import PublishedDataset, StateDir, ingest_endpoint, local_uri
from kubeforge.cli.processes import Child, Children
from kubeforge.cli.view import RunView
from kubeforge.crawlconfig import (
    EXIT_CONFIG,
    SHARD_INDEX_ENV,
    CrawlerConfig,
    crawl_command,
    crawler_config,
    publish_command,
)
from kubeforge.dataset import Manifest, read_manifest
from kubeforge.progress import FILE_ENV
from kubeforge.storage import ObjectNotFound, open_store

VERSION = 1
"""The dataset version a local run crawls into, as the operator's first crawl does."""
SHARD_RETRIES = 3
POLL_SECONDS = 0.5


class IngestFailed(Exception):
    """A shard or the publish stage failed for good."""


@dataclass(frozen=True)
class LocalIngestPlan:
    """What a local run of a DataIngest executes."""

    ingest: DataIngest
    config: CrawlerConfig
    config_path: Path
    crawl_command: list[str]
    publish_command: list[str]
    env: dict[str, str]
    endpoint: str | None

    def shard_env(self, shard: int, progress_file: Path) -> dict[str, str]:
        return {**self.env, SHARD_INDEX_ENV: str(shard), FILE_ENV: str(progress_file)}


def plan_ingest(ingest: DataIngest, state: StateDir, environ: Mapping[str, str]) -> LocalIngestPlan:
    """The operator's crawler config and commands for this machine (pure: nothing is started)."""
    name = ingest.metadata.name or ""
    endpoint = ingest_endpoint(ingest, environ)
    config = crawler_config(ingest, VERSION)
    if endpoint is None:
        config = config.model_copy(
            update={"dataset_uri": local_uri(config.dataset_uri, state.objects)}
        )
    config_path = (state.ingest_dir(name) / "crawler.yaml").resolve()
    env = {**environ, "PYTHONUNBUFFERED": "1"}
    storage = ingest.spec.storage
    if endpoint is not None:
        env["AWS_ENDPOINT_URL"] = endpoint
        if storage.region:
            env["AWS_REGION"] = storage.region
    return LocalIngestPlan(
        ingest=ingest,
        config=config,
        config_path=config_path,
        crawl_command=crawl_command(str(config_path), sys.executable),
        publish_command=publish_command(str(config_path), sys.executable),
        env=env,
        endpoint=endpoint,
    )


def _ensure_bucket(plan: LocalIngestPlan) -> None:
    """Creates the S3 bucket when the DataIngest asks for it (the operator's provisioning)."""
    if plan.endpoint is None or not plan.ingest.spec.storage.create:
        return
    import boto3  # only a run against S3 needs it

    from kubeforge.s3tls import refuse_certificates_at_once

    storage = plan.ingest.spec.storage
    client = refuse_certificates_at_once(
        boto3.client("s3", endpoint_url=plan.endpoint, region_name=storage.region)
    )
    existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
    if storage.bucket not in existing:
        client.create_bucket(Bucket=storage.bucket)


def _counters(path: Path) -> CrawlCounters | None:
    try:
        return CrawlCounters.model_validate_json(path.read_text())
    except (OSError, ValidationError):
        return None


def _published(plan: LocalIngestPlan) -> Manifest | None:
    try:
        return read_manifest(open_store(plan.config.dataset_uri))
    except ObjectNotFound:
        return None


def run_ingest(plan: LocalIngestPlan, children: Children, view: RunView) -> PublishedDataset:
    """Crawls and publishes (or finds the published dataset); returns where it is."""
    name = plan.ingest.metadata.name or ""
    directory = plan.config_path.parent
    manifest = _published(plan)
    if manifest is not None:
        view.event(f"DataIngest {name}: already published at {plan.config.dataset_uri}")
    else:
        _ensure_bucket(plan)
        directory.mkdir(parents=True, exist_ok=True)
        document = plan.config.model_dump(mode="json", by_alias=True)
        plan.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
        view.event(
            f"DataIngest {name}: crawling with {plan.config.shards} shards "
            f"into {plan.config.dataset_uri}"
        )
        _crawl(plan, children, view, directory)
        publish = children.start(
            f"{name} publish", plan.publish_command, plan.env, directory / "logs" / "publish.log"
        )
        if publish.process.wait() != 0:
            raise IngestFailed(f"DataIngest {name}: publish failed, see {publish.log_path}")
        children.forget_exited()
        manifest = read_manifest(open_store(plan.config.dataset_uri))
        view.event(
            f"DataIngest {name}: published {manifest.documents} documents "
            f"({manifest.duplicates_removed} duplicates removed across shards)"
        )
    return PublishedDataset(
        uri=plan.config.dataset_uri,
        documents=manifest.documents,
        bytes=manifest.bytes,
        endpoint=plan.endpoint,
    )


def _crawl(plan: LocalIngestPlan, children: Children, view: RunView, directory: Path) -> None:
    name = plan.ingest.metadata.name or ""
    shards = plan.config.shards
    budget = math.ceil(plan.config.sources.max_pages / shards)
    progress_files = [directory / f"progress-{shard}.json" for shard in range(shards)]
    tasks = [view.add_shard(name, shard, budget) for shard in range(shards)]
    failures = [0] * shards

    def start(shard: int) -> Child:
        return children.start(
            f"{name} shard {shard}",
            plan.crawl_command,
            plan.shard_env(shard, progress_files[shard]),
            directory / "logs" / f"shard-{shard}.log",
        )

    running = {shard: start(shard) for shard in range(shards)}
    while running:
        time.sleep(POLL_SECONDS)
        for shard, child in list(running.items()):
            counters = _counters(progress_files[shard])
            code = child.poll()
            if counters is not None:
                view.update_shard(tasks[shard], counters, done=code == 0)
            if code is None:
                continue
            del running[shard]
            if code == 0:
                continue
            failures[shard] += 1
            if code == EXIT_CONFIG or failures[shard] > SHARD_RETRIES:
                raise IngestFailed(
                    f"DataIngest {name}: shard {shard} failed with exit code {code}, "
                    f"see {child.log_path}"
                )
            view.event(f"DataIngest {name}: shard {shard} exited with {code}; resuming it")
            running[shard] = start(shard)
        children.forget_exited()
