"""WARC readers: FastWARC against warcio on the same generated file, and kubeforge's reader
(`kubeforge_crawler.warc`: gzip members split by zlib, each parsed by FastWARC) on it too.

The file is written as Common Crawl writes its WARC files (one gzip member per record, a
`request` record before each `response`), from pydoc's HTML of standard-library modules
(`tests.warcfiles`), RECORDS responses in all. Each reader runs in a process of its own, which
reads every response record, its HTTP headers parsed and its whole payload read, and reports
records per second (wall and CPU time of reading) and its peak resident memory (ru_maxrss) less
its resident memory before reading (the libraries imported). Run from the repository root:

    .venv/bin/python -m benchmarks.crawler.warc_readers [--records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests import warcfiles

READERS = ("fastwarc", "warcio", "kubeforge")


def write_file(path: Path, records: int) -> int:
    """Writes the file; returns its size in bytes."""
    pages = [warcfiles.module_html(name).encode() for name in warcfiles.HTML_MODULES]
    with path.open("wb") as file:
        file.write(warcfiles.warcinfo())
        for index in range(records):
            url = f"https://docs.example/{index}"
            file.write(warcfiles.response(url, pages[index % len(pages)]))
    return path.stat().st_size


def read_fastwarc(path: Path) -> int:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    count = 0
    with path.open("rb") as file:
        for record in ArchiveIterator(file, record_types=WarcRecordType.response, parse_http=True):
            record.reader.read()
            count += 1
    return count


def read_warcio(path: Path) -> int:
    from warcio.archiveiterator import ArchiveIterator

    count = 0
    with path.open("rb") as file:
        for record in ArchiveIterator(file):
            if record.rec_type == "response":
                record.content_stream().read()
                count += 1
    return count


def read_kubeforge(path: Path) -> int:
    from kubeforge.storage import FileStore, read_ranges
    from kubeforge_crawler.warc import WarcDocument, read_warc_records

    open_at = functools.partial(read_ranges, FileStore(path.parent), path.name)
    return sum(
        isinstance(read.outcome, WarcDocument)
        for read in read_warc_records(open_at, 16 * 1024 * 1024)
    )


def measure(reader: str, path: Path) -> dict[str, float]:
    """Runs one reader in this process."""
    read: Callable[[Path], int] = {
        "fastwarc": read_fastwarc,
        "warcio": read_warcio,
        "kubeforge": read_kubeforge,
    }[reader]
    # Every library imported before the baseline, so each reader is measured alike.
    import fastwarc.warc  # noqa: F401
    import warcio.archiveiterator  # noqa: F401

    import kubeforge_crawler.warc  # noqa: F401

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall, cpu = time.perf_counter(), time.process_time()
    count = read(path)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "records": count,
        "records_per_second": count / wall,
        "records_per_cpu_second": count / cpu,
        "peak_mib_over_baseline": (peak - before) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reader", choices=READERS, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.reader:
        print(json.dumps(measure(arguments.reader, arguments.file)))
        return
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.warc.gz"
        size = write_file(path, arguments.records)
        print(f"{arguments.records} response records, {size / 2**20:.1f} MiB gzipped")
        results: dict[str, list[dict[str, float]]] = {reader: [] for reader in READERS}
        for _ in range(arguments.rounds):
            for reader in READERS:  # interleaved: a slow spell of the machine hits all
                command = [sys.executable, "-m", "benchmarks.crawler.warc_readers"]
                command += ["--reader", reader, "--file", str(path)]
                output = subprocess.run(command, capture_output=True, check=True, text=True)
                results[reader].append(json.loads(output.stdout))
        medians = {
            reader: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            for reader, runs in results.items()
        }
        print("reader     records/s  records/CPU-s  peak MiB over baseline (median)")
        for reader, median in medians.items():
            print(
                f"{reader:10} {median['records_per_second']:9.0f} "
                f"{median['records_per_cpu_second']:14.0f} {median['peak_mib_over_baseline']:10.1f}"
            )
        ratio = medians["fastwarc"]["records_per_second"] / medians["warcio"]["records_per_second"]
        print(f"FastWARC / warcio, records/s: {ratio:.1f}x")


if __name__ == "__main__":
    main()
