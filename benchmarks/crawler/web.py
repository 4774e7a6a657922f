"""A larger local web for the crawler benchmarks: pydoc pages of installed modules on 8 hosts.

The text is real: pydoc's HTML documentation of the standard library's modules and submodules and
of a few installed packages (about 1,000 pages, 30 KB of HTML each on average), rendered here and
nothing downloaded. Modules are dealt round-robin to the hosts 127.0.1.1-127.0.1.8; module links
point at the host that serves the module; every host's index links to its modules and to the other
hosts' indexes. A mirror host (127.0.1.9) serves planted exact and near copies (one word in 150
replaced, like `tests.testweb`), which only its index links to. Every host has a robots.txt that
disallows `/private/` (which no page links to), so each crawler reads and obeys one per host.

`python -m benchmarks.crawler.web DIR` renders the web into DIR (once; reused afterwards);
`serve(DIR)` serves it from a separate process (aiohttp, every body in memory), so the crawlers
measured never share a process, or its GIL, with the server.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import multiprocessing
import pkgutil
import pydoc
import random
import re
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kubeforge.cli.localweb import near_copy

PORT = 18090
HOSTS = tuple(f"127.0.1.{n}" for n in range(1, 9))
MIRROR = "127.0.1.9"
NETWORK = "127.0.1.0/24"
COPY_FRACTION = 0.05
"""The share of module pages that get an exact copy, and again a near copy, on the mirror."""
PACKAGES = (
    "yaml",
    "pydantic",
    "aiohttp",
    "yarl",
    "multidict",
    "botocore",
    "boto3",
    "twisted",
    "scrapy",
    "kopf",
    "lightkube",
    "prometheus_client",
    "protego",
    "w3lib",
    "parsel",
    "pluggy",
    "_pytest",
)
_SKIPPED = {
    "antigravity",
    "this",
    "idlelib",
    "tkinter",
    "turtle",
    "turtledemo",
    "test",
    "tests",
    "lib2to3",
    "ensurepip",
    "pydoc_data",
    "venv",
    "__main__",
}
MAX_MODULES = 1200


def _importable(name: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(name)
    except Exception:
        return False
    return True


def module_names() -> list[str]:
    """The modules documented: the standard library's public ones and the PACKAGES, with their
    submodules, sorted."""
    tops = sorted(n for n in sys.stdlib_module_names if not n.startswith("_") and n not in _SKIPPED)
    names: list[str] = []
    for top in [*tops, *PACKAGES]:
        if not _importable(top):
            continue
        names.append(top)
        module = sys.modules[top]
        for info in pkgutil.walk_packages(getattr(module, "__path__", []), f"{top}."):
            parts = info.name.split(".")[1:]
            if any(part.startswith("_") or part in _SKIPPED for part in parts):
                continue
            if _importable(info.name):
                names.append(info.name)
    return sorted(set(names))[:MAX_MODULES]


def _render(name: str) -> tuple[str, str | None]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(name)
            return name, pydoc.html.page(pydoc.describe(module), pydoc.html.document(module, name))
    except Exception:
        return name, None


@dataclass(frozen=True)
class Web:
    """A rendered web: where its files are, its seed, and the planted copies."""

    root: Path
    seeds: tuple[str, ...]
    pages: int
    """HTML pages a complete crawl fetches (indexes, module pages, copies)."""
    exact_pairs: tuple[tuple[str, str], ...]
    near_pairs: tuple[tuple[str, str], ...]

    @property
    def domains(self) -> list[str]:
        return [*HOSTS, MIRROR]

    @staticmethod
    def load(root: Path) -> Web:
        data = json.loads((root / "web.json").read_text())
        return Web(
            root=root,
            seeds=tuple(data["seeds"]),
            pages=data["pages"],
            exact_pairs=tuple(tuple(pair) for pair in data["exact_pairs"]),
            near_pairs=tuple(tuple(pair) for pair in data["near_pairs"]),
        )


def _origin(host: str) -> str:
    return f"http://{host}:{PORT}"


def _page_path(name: str) -> str:
    return f"/m/{name}.html"


def _index(title: str, links: list[tuple[str, str]]) -> str:
    items = "\n".join(f'<li><a href="{href}">{text}</a></li>' for href, text in links)
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1>"
        f"<p>The modules documented on this host, and the other hosts of the benchmark web.</p>"
        f"<ul>{items}</ul></body></html>"
    )


def render(root: Path) -> Web:
    """Renders the web into `root` (reusing an earlier render there)."""
    if (root / "web.json").exists():
        return Web.load(root)
    with multiprocessing.get_context("spawn").Pool() as pool:
        rendered = dict(pool.map(_render, module_names(), chunksize=8))
    pages = {name: html for name, html in rendered.items() if html is not None}
    owner = {name: HOSTS[i % len(HOSTS)] for i, name in enumerate(sorted(pages))}

    def rewrite(match: re.Match[str]) -> str:
        name, anchor = match.group(1), match.group(2) or ""
        if name in owner:
            return f'href="{_origin(owner[name])}{_page_path(name)}{anchor}"'
        return f'href="#{name}"'

    files: dict[str, str] = {}
    for name, html in pages.items():
        html = re.sub(r'href="([\w.]+)\.html(#[^"]*)?"', rewrite, html)
        files[f"{owner[name]}{_page_path(name)}"] = html.replace('href="."', 'href="/"')
    for host in HOSTS:
        links = [(_page_path(n), n) for n in sorted(pages) if owner[n] == host]
        links += [(f"{_origin(other)}/", other) for other in (*HOSTS, MIRROR) if other != host]
        files[f"{host}/index.html"] = _index(f"host {host}", links)
    generator = random.Random(5)  # noqa: S311 -- a fixed benchmark web, not secrets
    chosen = generator.sample(sorted(pages), int(len(pages) * COPY_FRACTION) * 2)
    half = len(chosen) // 2
    exact, near, copies = [], [], []
    for name in chosen[:half]:
        files[f"{MIRROR}/copy/{name}.html"] = files[f"{owner[name]}{_page_path(name)}"]
        original = _origin(owner[name]) + _page_path(name)
        exact.append((original, f"{_origin(MIRROR)}/copy/{name}.html"))
        copies.append((f"/copy/{name}.html", f"copy of {name}"))
    for name in chosen[half:]:
        files[f"{MIRROR}/near/{name}.html"] = near_copy(files[f"{owner[name]}{_page_path(name)}"])
        original = _origin(owner[name]) + _page_path(name)
        near.append((original, f"{_origin(MIRROR)}/near/{name}.html"))
        copies.append((f"/near/{name}.html", f"near copy of {name}"))
    files[f"{MIRROR}/index.html"] = _index("mirror", copies)
    for path, html in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(html)
    for host in (*HOSTS, MIRROR):
        (root / host / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    web = Web(root, (f"{_origin(HOSTS[0])}/",), len(files), tuple(exact), tuple(near))
    data = {
        "seeds": web.seeds,
        "pages": web.pages,
        "exact_pairs": web.exact_pairs,
        "near_pairs": web.near_pairs,
    }
    (root / "web.json").write_text(json.dumps(data))
    return web


def origin_url(host: str) -> str:
    return _origin(host)


def _wait_for_port(host: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, PORT), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"the benchmark web did not start on {host}:{PORT}")


@contextlib.contextmanager
def serve(web: Web) -> Iterator[None]:
    """Serves the web from a separate process while the block runs."""
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.crawler.serve", str(web.root)],
        stdout=subprocess.DEVNULL,
    )
    try:
        for host in (*HOSTS, MIRROR):
            _wait_for_port(host)
        yield
    finally:
        server.terminate()
        server.wait()


def page_requests() -> int:
    """Page requests (robots.txt aside) the server answered since it started."""
    with urllib.request.urlopen(f"{_origin(HOSTS[0])}/__requests") as response:  # noqa: S310
        return int(response.read())


if __name__ == "__main__":
    rendered_web = render(Path(sys.argv[1]))
    print(f"{rendered_web.pages} pages in {rendered_web.root}")
