"""Writes the files a generator owns, or checks that the committed ones are up to date.

A generator works out every file it owns with the text it should hold; `write_or_check` writes
them, or with `check` writes nothing and names each file that is missing or differs. Its callers
are the CRD generator (`kubeforge_operator.crds`) and the kustomize install renderer
(`hack/render_install.py`), so both write, and report drift, the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path


def stale_files(expected: Mapping[Path, str]) -> list[Path]:
    """The files that are missing or differ from what the generator would write."""
    return [
        path
        for path, text in expected.items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def write_or_check(expected: Mapping[Path, str], *, check: bool, regenerate_command: str) -> int:
    """Writes every file of `expected`; with `check`, writes nothing and reports each stale file
    on stderr with the command that regenerates it. The exit status: 1 if a file is stale."""
    if check:
        stale = stale_files(expected)
        for path in stale:
            print(f"out of date: {path} (run `{regenerate_command}`)", file=sys.stderr)
        return 1 if stale else 0
    for path, text in expected.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0
