"""Crawl throughput: kubeforge's crawler against Scrapy on the same local web, pages per CPU-second.

Both crawl the whole benchmark web (`web.py`: about 1,300 pydoc pages on 9 loopback hosts, served
by a separate aiohttp process) from the same seed, alternating, each as its own process:

- kubeforge: `python -m kubeforge_crawler --config FILE` (the command the operator's pods run),
  one shard, writing its dataset to a local directory, with the whole document pipeline on:
  extraction (selectolax), language detection, quality filters, PII scrubbing, exact and MinHash
  near-duplicate removal, and the per-part signatures, checksums and provenance;
- Scrapy: `benchmarks/crawler/scrapy_spider.py`, extracting title and text with XPath and links
  with LinkExtractor into a gzip JSON-lines feed (no deduplication: Scrapy has none).

Equal settings: the same concurrency per host and in all, no delay, robots.txt obeyed, the same
user agent, depth, timeouts, response size limit and retries; cookies and Scrapy's telnet console
off (kubeforge has neither). "Per core" is pages divided by the crawler process' own user+system
CPU seconds (from wait4), so the server's CPU, and other work on the machine, do not count;
wall-clock pages/s is shown too. The server counts the pages each crawler asked for, which checks
that both did the same work. Run from the repository root:

    .venv/bin/python -m benchmarks.crawler.crawl [ROUNDS] [--web DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.crawler.web import MIRROR, NETWORK, Web, page_requests, render, serve
from kubeforge.crawlconfig import CrawlerConfig, crawl_command
from tests.workloads.crawls import FILTERS as PYDOC_FILTERS

PER_HOST_CONCURRENCY = 4
PRODUCT = "KubeforgeBench"
CONTACT = "https://kubeforge.invalid/benchmarks"
MAX_DEPTH = 8
TIMEOUT_SECONDS = 30
RETRIES = 2
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# The tests' filters for pydoc pages, with the language score on, as a real ingest runs it.
FILTERS = {**PYDOC_FILTERS, "language": {"enabled": True}}


@dataclass(frozen=True)
class Run:
    """One crawl of the whole web by one crawler."""

    pages: int
    cpu_seconds: float
    wall_seconds: float
    peak_rss_mb: float

    @property
    def pages_per_cpu_second(self) -> float:
        return self.pages / self.cpu_seconds

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.wall_seconds


def kubeforge_config(web: Web, dataset: Path) -> CrawlerConfig:
    return CrawlerConfig.model_validate(
        {
            "datasetUri": dataset.as_uri(),
            "shards": 1,
            "sources": {
                "seeds": list(web.seeds),
                "allowedDomains": web.domains,
                "maxDepth": MAX_DEPTH,
                "maxPages": 100000,
            },
            "crawl": {
                "userAgent": {"product": PRODUCT, "contact": CONTACT},
                "perHostConcurrency": PER_HOST_CONCURRENCY,
                "minDelaySeconds": 0,
                "connectTimeoutSeconds": TIMEOUT_SECONDS,
                "firstByteTimeoutSeconds": TIMEOUT_SECONDS,
                "totalTimeoutSeconds": TIMEOUT_SECONDS,
                "maxResponseBytes": MAX_RESPONSE_BYTES,
                "retries": RETRIES,
                "allowedNetworks": [NETWORK],
            },
            "processing": {"filters": FILTERS},
        }
    )


def scrapy_settings(web: Web, feed: Path) -> dict[str, object]:
    hosts = len(web.domains)
    return {
        "SEEDS": list(web.seeds),
        "DOMAINS": web.domains,
        "USER_AGENT": f"{PRODUCT}/1.0 (+{CONTACT})",
        "ROBOTSTXT_OBEY": True,
        "CONCURRENT_REQUESTS": PER_HOST_CONCURRENCY * hosts,
        "CONCURRENT_REQUESTS_PER_DOMAIN": PER_HOST_CONCURRENCY,
        "DOWNLOAD_DELAY": 0,
        "AUTOTHROTTLE_ENABLED": False,
        "DEPTH_LIMIT": MAX_DEPTH,
        "DOWNLOAD_TIMEOUT": TIMEOUT_SECONDS,
        "DOWNLOAD_MAXSIZE": MAX_RESPONSE_BYTES,
        "RETRY_TIMES": RETRIES,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "WARNING",
        "FEEDS": {
            feed.as_uri(): {
                "format": "jsonlines",
                "postprocessing": ["scrapy.extensions.postprocessing.GzipPlugin"],
            }
        },
    }


def measured(command: list[str], log: Path) -> tuple[float, float, float]:
    """Runs a command to its end: its CPU seconds (user+system), wall seconds and peak RSS (MB)."""
    started = time.perf_counter()
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command} failed ({process.returncode}): {log.read_text()[-3000:]}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024


def crawl_kubeforge(web: Web, workdir: Path) -> Run:
    config_path = workdir / "crawler.yaml"
    config = kubeforge_config(web, workdir / "dataset")
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True)))
    before = page_requests()
    cpu, wall, rss = measured(
        [*crawl_command(str(config_path), python=sys.executable), "--shard", "0"],
        workdir / "kubeforge.log",
    )
    return Run(page_requests() - before, cpu, wall, rss)


def crawl_scrapy(web: Web, workdir: Path) -> Run:
    settings_path = workdir / "scrapy.json"
    settings_path.write_text(json.dumps(scrapy_settings(web, workdir / "items.jsonl.gz")))
    before = page_requests()
    cpu, wall, rss = measured(
        [sys.executable, "-m", "benchmarks.crawler.scrapy_spider", str(settings_path)],
        workdir / "scrapy.log",
    )
    return Run(page_requests() - before, cpu, wall, rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("rounds", type=int, nargs="?", default=3)
    parser.add_argument(
        "--web",
        type=Path,
        default=Path(tempfile.gettempdir()) / "kubeforge-bench-web",
        help="where the web is rendered (reused when it exists)",
    )
    arguments = parser.parse_args()
    web = render(arguments.web)
    print(f"web: {web.pages} pages on {len(web.domains)} hosts (mirror {MIRROR})")
    runs: dict[str, list[Run]] = {"kubeforge": [], "scrapy": []}
    with serve(web), tempfile.TemporaryDirectory() as scratch:
        for round_ in range(arguments.rounds):
            for name, crawl in (("kubeforge", crawl_kubeforge), ("scrapy", crawl_scrapy)):
                workdir = Path(scratch) / f"{name}-{round_}"
                workdir.mkdir()
                run = crawl(web, workdir)
                runs[name].append(run)
                print(
                    f"round {round_} {name:9s}: {run.pages} pages, {run.cpu_seconds:.1f} CPU s, "
                    f"{run.wall_seconds:.1f} s, {run.pages_per_cpu_second:.0f} pages/CPU-s, "
                    f"{run.pages_per_second:.0f} pages/s, peak RSS {run.peak_rss_mb:.0f} MB"
                )
    print(
        "\n| crawler | pages | pages per CPU-second (median) | pages/s wall (median) "
        "| peak RSS (MB) |"
    )
    print("|---|---|---|---|---|")
    medians = {}
    for name, measured_runs in runs.items():
        per_cpu = statistics.median(run.pages_per_cpu_second for run in measured_runs)
        wall = statistics.median(run.pages_per_second for run in measured_runs)
        rss = max(run.peak_rss_mb for run in measured_runs)
        pages = sorted({run.pages for run in measured_runs})
        medians[name] = (per_cpu, wall)
        print(f"| {name} | {pages} | {per_cpu:.0f} | {wall:.0f} | {rss:.0f} |")
    cpu_ratio = medians["kubeforge"][0] / medians["scrapy"][0]
    wall_ratio = medians["kubeforge"][1] / medians["scrapy"][1]
    print(f"\nkubeforge / scrapy: {cpu_ratio:.2f}x pages per CPU-second, {wall_ratio:.2f}x wall")


if __name__ == "__main__":
    main()
