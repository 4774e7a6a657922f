"""The document filters' cost: CPU milliseconds per document for each rule set at its published
defaults, on real text: the heapq essay of tests/filtertexts.py (4.6 KB of prose, kept by every
rule) and the extracted text of the test web's pydoc pages.

Each filter runs on every document (not only on those the earlier ones keep), after one warm-up
call that loads the language model. CPU time of this process (`time.process_time`), so other
work on the machine counts less. Run from the repository root:

    .venv/bin/python -m benchmarks.crawler.filters [ROUNDS]
"""

from __future__ import annotations

import sys
import time

from kubeforge.api.dataingest import ProcessingSpec
from kubeforge.cli.localweb import module_page
from kubeforge_crawler.extract import extract_html
from kubeforge_crawler.filters import Document, Filter, document_filters
from tests.filtertexts import PROSE, URL
from tests.testweb import MODULES


def milliseconds_per_document(step: Filter, texts: list[str], rounds: int) -> float:
    started = time.process_time()
    for _ in range(rounds):
        for text in texts:
            step(Document(URL, text))
    return (time.process_time() - started) / (rounds * len(texts)) * 1000


def main(rounds: int) -> None:
    pages = [extract_html(module_page(name)).text for names in MODULES.values() for name in names]
    corpora = {"heapq essay": [PROSE] * len(pages), f"{len(pages)} pydoc pages": pages}
    filters = document_filters(ProcessingSpec.model_validate({"languages": ["en"]}))
    for step in filters:
        step(Document(URL, PROSE))
    print("| filter | " + " | ".join(f"{name} (ms/doc)" for name in corpora) + " |")
    print("|---|" + "---|" * len(corpora))
    for step in filters:
        cells = [
            f"{milliseconds_per_document(step, texts, rounds):.2f}" for texts in corpora.values()
        ]
        print(f"| {type(step).__name__} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
