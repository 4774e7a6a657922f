"""Near-duplicate removal: kubeforge's MinHash + LSH against datasketch's, same settings, one run.

Documents: the text kubeforge extracts from every module page of the benchmark web (`web.py`),
then planted near copies of a random 30% of them with one word in every k replaced, k drawn from
200, 100, 50, 25 and 12 (true similarity from about 0.97 down to about 0.6), in a fixed shuffled
order after the originals. Both sides do the same work per document, timed in this process with
the process' CPU clock: shingle the text (lower-cased 5-word n-grams of `\\w+` words), compute a
128-permutation MinHash signature, look it up in an LSH index with the same bands and rows
(`kubeforge_crawler.minhash.optimal_bands` for threshold 0.8), keep it as a duplicate when a
candidate's estimated similarity reaches 0.8, else add it. datasketch is used as its
documentation shows: `MinHash.update_batch` over the encoded shingles, `MinHashLSH(params=...)`,
`query` then `MinHash.jaccard` to verify.

Quality on the planted set, against the exact Jaccard similarity of the shingle sets:
precision = removals whose matched document truly reaches the threshold / removals;
recall = planted copies that truly reach the threshold and were removed / such copies. Run from
the repository root (the web is rendered on first use, as in `crawl.py`):

    .venv/bin/python -m benchmarks.crawler.neardup [ROUNDS] [--web DIR]
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datasketch import MinHash, MinHashLSH

from benchmarks.crawler.web import HOSTS, render
from kubeforge_crawler.extract import extract_html
from kubeforge_crawler.minhash import MinHasher, NearDuplicateIndex, optimal_bands

THRESHOLD = 0.8
PERMUTATIONS = 128
SHINGLE_WORDS = 5
COPY_FRACTION = 0.3
EDIT_EVERY = (200, 100, 50, 25, 12)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Planted:
    texts: list[str]
    originals: int
    copy_of: dict[int, int]
    """Planted copy position -> its original's position."""


def planted_set(web_root: Path) -> Planted:
    pages = sorted(path for host in HOSTS for path in (web_root / host / "m").glob("*.html"))
    texts = [text for path in pages if (text := extract_html(path.read_text()).text)]
    generator = random.Random(20240601)  # noqa: S311 -- a fixed benchmark order, not secrets
    chosen = generator.sample(range(len(texts)), int(len(texts) * COPY_FRACTION))
    generator.shuffle(chosen)
    copy_of = {}
    originals = len(texts)
    for original in chosen:
        every = generator.choice(EDIT_EVERY)
        words = texts[original].split(" ")
        edited = " ".join("lorem" if i % every == every - 1 else w for i, w in enumerate(words))
        copy_of[len(texts)] = original
        texts.append(edited)
    return Planted(texts, originals, copy_of)


def shingle_set(text: str) -> set[str]:
    words = _WORD.findall(text.lower())
    n = SHINGLE_WORDS
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def jaccard(first: set[str], second: set[str]) -> float:
    return len(first & second) / len(first | second)


Dedup = Callable[[list[str]], dict[int, int]]
"""Runs a dedup pass over documents in order: removed position -> the kept one it matched."""


def kubeforge_pass(texts: list[str]) -> dict[int, int]:
    hasher = MinHasher(PERMUTATIONS, SHINGLE_WORDS)
    index = NearDuplicateIndex(THRESHOLD, PERMUTATIONS)
    kept: list[int] = []
    removed = {}
    for position, text in enumerate(texts):
        signature = hasher.signature(text)
        match = index.find(signature)
        if match is None:
            index.add(signature)
            kept.append(position)
        else:
            removed[position] = kept[match]
    return removed


def datasketch_pass(texts: list[str]) -> dict[int, int]:
    lsh = MinHashLSH(
        threshold=THRESHOLD,
        num_perm=PERMUTATIONS,
        params=optimal_bands(THRESHOLD, PERMUTATIONS),
    )
    signatures: dict[int, MinHash] = {}
    removed = {}
    for position, text in enumerate(texts):
        signature = MinHash(num_perm=PERMUTATIONS)
        signature.update_batch([shingle.encode("utf-8") for shingle in shingle_set(text)])
        match = next(
            (
                candidate
                for candidate in lsh.query(signature)
                if signature.jaccard(signatures[candidate]) >= THRESHOLD
            ),
            None,
        )
        if match is None:
            lsh.insert(position, signature)
            signatures[position] = signature
        else:
            removed[position] = match
    return removed


def quality(planted: Planted, removed: dict[int, int]) -> tuple[float, float]:
    """(precision, recall) of a pass' removals against the exact similarities."""
    shingles: dict[int, set[str]] = {}

    def of(position: int) -> set[str]:
        if position not in shingles:
            shingles[position] = shingle_set(planted.texts[position])
        return shingles[position]

    justified = sum(1 for doc, match in removed.items() if jaccard(of(doc), of(match)) >= THRESHOLD)
    true_copies = {
        copy
        for copy, original in planted.copy_of.items()
        if jaccard(of(copy), of(original)) >= THRESHOLD
    }
    precision = justified / len(removed) if removed else 1.0
    recall = len(true_copies & removed.keys()) / len(true_copies)
    return precision, recall


def timed(dedup: Dedup, texts: list[str]) -> tuple[float, dict[int, int]]:
    started = time.process_time()
    removed = dedup(texts)
    return time.process_time() - started, removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("rounds", type=int, nargs="?", default=3)
    parser.add_argument(
        "--web", type=Path, default=Path(tempfile.gettempdir()) / "kubeforge-bench-web"
    )
    arguments = parser.parse_args()
    planted = planted_set(render(arguments.web).root)
    texts = planted.texts
    words = sum(len(text.split()) for text in texts)
    print(
        f"{len(texts)} documents ({planted.originals} originals, {len(planted.copy_of)} planted "
        f"near copies), {words / len(texts):.0f} words each on average; bands x rows "
        f"{optimal_bands(THRESHOLD, PERMUTATIONS)}"
    )
    sides: dict[str, Dedup] = {"kubeforge": kubeforge_pass, "datasketch": datasketch_pass}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    results: dict[str, dict[int, int]] = {}
    for round_ in range(arguments.rounds):
        for name, dedup in sides.items():
            seconds, removed = timed(dedup, texts)
            rates[name].append(len(texts) / seconds)
            results[name] = removed
            print(f"round {round_} {name:10s}: {len(texts) / seconds:.0f} docs/CPU-s")
    print("\n| side | docs per CPU-second (median) | removed | precision | recall |")
    print("|---|---|---|---|---|")
    for name in sides:
        precision, recall = quality(planted, results[name])
        rate = statistics.median(rates[name])
        print(f"| {name} | {rate:.0f} | {len(results[name])} | {precision:.3f} | {recall:.3f} |")
    ratio = statistics.median(rates["kubeforge"]) / statistics.median(rates["datasketch"])
    print(f"\nkubeforge / datasketch: {ratio:.2f}x docs per CPU-second")


if __name__ == "__main__":
    main()
