"""Extraction: kubeforge's extractor (selectolax) against trafilatura on the same pages.

Pages: a fixed random sample of the benchmark web's module pages (`web.py`: pydoc HTML of
installed modules). Each side turns every page into text, timed in this process with the CPU
clock: kubeforge's `extract_html` (title, text and links from one parse), trafilatura's
`extract` with its defaults (main-content detection with its fallback extractors) and with
`fast=True` (no fallbacks). Agreement: the word-level F1 of kubeforge's text against
trafilatura's (multisets of lower-cased `\\w+` words), per page; a page trafilatura returns nothing
for counts as 0. Run from the repository root:

    .venv/bin/python -m benchmarks.crawler.extraction [PAGES] [--web DIR]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import trafilatura

from benchmarks.crawler.web import HOSTS, render
from kubeforge_crawler.extract import extract_html

_WORD = re.compile(r"\w+")


def words(text: str) -> Counter[str]:
    return Counter(_WORD.findall(text.lower()))


def f1(candidate: str, reference: str) -> float:
    ours, theirs = words(candidate), words(reference)
    common = sum((ours & theirs).values())
    if not common:
        return 0.0
    precision = common / sum(ours.values())
    recall = common / sum(theirs.values())
    return 2 * precision * recall / (precision + recall)


def timed(extract: Callable[[str], str | None], pages: list[str]) -> tuple[float, list[str]]:
    started = time.process_time()
    texts = [extract(page) or "" for page in pages]
    return len(pages) / (time.process_time() - started), texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("pages", type=int, nargs="?", default=200)
    parser.add_argument(
        "--web", type=Path, default=Path(tempfile.gettempdir()) / "kubeforge-bench-web"
    )
    arguments = parser.parse_args()
    root = render(arguments.web).root
    paths = sorted(path for host in HOSTS for path in (root / host / "m").glob("*.html"))
    sample = random.Random(7).sample(paths, min(arguments.pages, len(paths)))  # noqa: S311
    pages = [path.read_text() for path in sample]
    print(f"{len(pages)} pages, {sum(map(len, pages)) / len(pages) / 1024:.0f} KiB of HTML each")
    sides: dict[str, Callable[[str], str | None]] = {
        "kubeforge (selectolax)": lambda page: extract_html(page).text,
        "trafilatura": trafilatura.extract,
        "trafilatura fast=True": lambda page: trafilatura.extract(page, fast=True),
    }
    results = {name: timed(extract, pages) for name, extract in sides.items()}
    ours = results["kubeforge (selectolax)"][1]
    print("\n| extractor | docs per CPU-second | empty | words per page | F1 vs kubeforge |")
    print("|---|---|---|---|---|")
    for name, (rate, texts) in results.items():
        pairs = zip(ours, texts, strict=True)
        agreement = statistics.mean(f1(mine, theirs) for mine, theirs in pairs)
        empty = sum(1 for text in texts if not text.strip())
        mean_words = statistics.mean(sum(words(text).values()) for text in texts)
        print(f"| {name} | {rate:.1f} | {empty} | {mean_words:.0f} | {agreement:.3f} |")
    for name in list(results)[1:]:
        ratio = results["kubeforge (selectolax)"][0] / results[name][0]
        print(f"kubeforge / {name}: {ratio:.1f}x docs per CPU-second")


if __name__ == "__main__":
    main()
