"""`python -m kubeforge_crawler --config FILE [--stage STAGE] [--shard N] [--tasks M]`

The crawler's entry point: reads the config file the operator writes (`kubeforge.crawlconfig`),
opens the dataset's object store (credentials and endpoint from the AWS_* environment), and runs
one shard (its index from --shard or JOB_COMPLETION_INDEX, as an Indexed Job sets it), one task
of a dedup stage (`dedup-buckets`, `dedup-clusters`, `dedup-filter`: task --shard of --tasks,
holding about --memory-entries entries), or the publish stage. With KUBEFORGE_PROGRESS_FILE set
(the local runner), a shard writes its counters there at every commit. Exit status: 0 done, 2 bad
config or arguments, 3 a dedup stage or publish before its input is complete.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError

from kubeforge.crawlconfig import (
    EXIT_CONFIG,
    EXIT_SHARDS_INCOMPLETE,
    SHARD_INDEX_ENV,
    CrawlerConfig,
)
from kubeforge.dataset import total_counters
from kubeforge.progress import FILE_ENV, FileSink
from kubeforge.storage import open_store
from kubeforge_crawler.dedup.layout import Stage, StagesIncomplete
from kubeforge_crawler.dedup.stages import DEDUP_STAGES, MEMORY_ENTRIES, run_stage
from kubeforge_crawler.publish import ShardsIncomplete, publish
from kubeforge_crawler.shard import ShardCrawler


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m kubeforge_crawler",
        description="Crawl one shard of a DataIngest, or publish its dataset.",
    )
    parser.add_argument("--config", type=Path, required=True, help="the crawler config (YAML)")
    parser.add_argument("--stage", choices=("crawl", "publish", *DEDUP_STAGES), default="crawl")
    parser.add_argument(
        "--shard",
        type=int,
        default=int(os.environ.get(SHARD_INDEX_ENV, "0")),
        help=f"the shard to crawl or the dedup task to run (default: ${SHARD_INDEX_ENV} or 0)",
    )
    parser.add_argument("--tasks", type=int, default=1, help="tasks of the dedup stage")
    parser.add_argument(
        "--memory-entries",
        type=int,
        default=MEMORY_ENTRIES,
        help="(hash, document) entries a dedup task buffers before it spills to storage",
    )
    parser.add_argument(
        "--scratch", type=Path, default=None, help="local directory of the clusters stage"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _arguments(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = CrawlerConfig.model_validate(yaml.safe_load(arguments.config.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as error:
        print(f"{arguments.config}: {error}", file=sys.stderr)
        return EXIT_CONFIG
    store = open_store(config.dataset_uri)
    if arguments.stage in DEDUP_STAGES:
        if not 0 <= arguments.shard < arguments.tasks or arguments.memory_entries < 1:
            print("need 0 <= --shard < --tasks and --memory-entries >= 1", file=sys.stderr)
            return EXIT_CONFIG
        try:
            task = run_stage(
                store,
                config,
                Stage(arguments.stage.removeprefix("dedup-")),
                arguments.shard,
                arguments.tasks,
                arguments.memory_entries,
                arguments.scratch,
            )
        except StagesIncomplete as error:
            print(error, file=sys.stderr)
            return EXIT_SHARDS_INCOMPLETE
        except ValueError as error:
            print(error, file=sys.stderr)
            return EXIT_CONFIG
        print(task.model_dump_json(exclude={"parts"}))
        return 0
    if arguments.stage == "publish":
        try:
            manifest = publish(store, config)
        except (ShardsIncomplete, StagesIncomplete) as error:
            print(error, file=sys.stderr)
            return EXIT_SHARDS_INCOMPLETE
        print(total_counters(manifest).model_dump_json(by_alias=True))
        return 0
    try:
        progress_file = os.environ.get(FILE_ENV)
        progress = FileSink(Path(progress_file)) if progress_file else None
        crawler = ShardCrawler(config, arguments.shard, store, progress)
    except ValueError as error:
        print(error, file=sys.stderr)
        return EXIT_CONFIG
    marker = asyncio.run(crawler.run())
    print(marker.counters.model_dump_json(by_alias=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
