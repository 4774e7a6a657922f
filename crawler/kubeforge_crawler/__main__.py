"""`python -m kubeforge_crawler --config FILE [--stage crawl|publish] [--shard N]`

The crawler's entry point: reads the config file the operator writes (`kubeforge.crawlconfig`),
opens the dataset's object store (credentials and endpoint from the AWS_* environment), and runs
one shard (its index from --shard or JOB_COMPLETION_INDEX, as an Indexed Job sets it) or the
publish stage. With KUBEFORGE_PROGRESS_FILE set (the local runner), a shard writes its counters
there at every commit. Exit status: 0 done, 2 bad config or arguments, 3 publish before every
shard is done.
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
from kubeforge_crawler.publish import ShardsIncomplete, publish
from kubeforge_crawler.shard import ShardCrawler


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m kubeforge_crawler",
        description="Crawl one shard of a DataIngest, or publish its dataset.",
    )
    parser.add_argument("--config", type=Path, required=True, help="the crawler config (YAML)")
    parser.add_argument("--stage", choices=("crawl", "publish"), default="crawl")
    parser.add_argument(
        "--shard",
        type=int,
        default=int(os.environ.get(SHARD_INDEX_ENV, "0")),
        help=f"the shard to crawl (default: ${SHARD_INDEX_ENV} or 0)",
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
    if arguments.stage == "publish":
        try:
            manifest = publish(store, config)
        except ShardsIncomplete as error:
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
