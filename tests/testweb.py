"""A local multi-host web for crawler tests, served by real HTTP servers on 127.0.0.x.

The text is real: pydoc's HTML pages of installed standard-library modules, with their real
links between modules rewritten to the host that serves each module (links to modules outside
the web point nowhere, links to docs.python.org stay and are off scope). Nothing is downloaded.
The serving pieces (sites, request log, routes, pages) are the demo web's
(`kubeforge.cli.localweb`); this module adds only the test web's hosts and hostile routes.

Hosts (each its own loopback address and port):

- docs-a: an index, module pages, `/private/` (disallowed by robots.txt), a page only its
  sitemap lists (robots.txt names the sitemap), a page too short to keep, and personal data.
- docs-b: module pages; robots.txt has a group for the crawler's product token with a
  Crawl-delay and a disallowed path, and disallows everything for other agents.
- docs-c: module pages; no robots.txt (404: everything allowed).
- mirror: planted exact copies and near copies (a word in every 150 replaced) of module pages.
- down: robots.txt answers 500, so none of its pages may be fetched.
- hostile: decompression bombs, a redirect loop and chain, a 1 GiB body, a slow drip, and
  redirects to cloud metadata, a private address, loopback, an IPv4-mapped IPv6 address and
  file://.
- outside (127.0.0.1): not part of the crawl's allowlist; hostile redirects point at it.

Every request is logged with its arrival time, so tests can say what was and was not fetched.
Tests of both tiers start it with free ports; `python -m tests.testweb` serves it on SAMPLE_PORT,
where manifests/samples/dataingest.yaml crawls it.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import brotli  # type: ignore[import-untyped]
import zstandard

from kubeforge.cli.localweb import (
    RequestLog,
    Route,
    Site,
    content,
    index_page,
    module_page,
    near_copy,
    redirect,
    rewrite_links,
    send,
    status,
)

MODULES = {
    "docs-a": ("json", "csv", "string", "textwrap", "heapq", "bisect", "fractions", "shlex"),
    "docs-b": ("glob", "fnmatch", "base64", "hmac", "secrets", "uuid", "copy", "pprint"),
    "docs-c": ("reprlib", "queue", "sched", "colorsys", "graphlib", "numbers", "getopt", "cmd"),
}
EXACT_COPIES = ("json", "glob", "queue")
NEAR_COPIES = ("csv", "base64", "sched", "textwrap")
# Chosen so that two shards split the crawled hosts: shard 0 owns docs-b and mirror, shard 1
# owns docs-a, docs-c and down (a test checks this, since the split is a hash).
ADDRESSES = {
    "docs-a": "127.0.0.2",
    "docs-b": "127.0.0.7",
    "docs-c": "127.0.0.3",
    "mirror": "127.0.0.9",
    "down": "127.0.0.4",
    "hostile": "127.0.0.5",
    "outside": "127.0.0.1",
}
SHARD_OF_HOST = {"docs-a": 1, "docs-b": 0, "docs-c": 1, "mirror": 0, "down": 1}
CRAWLED_HOSTS = ("docs-a", "docs-b", "docs-c", "mirror", "down")
PRODUCT = "KubeforgeTest"
CRAWL_DELAY = 0.3
PII_EMAIL = "webmaster@docs-a.example"
PII_PHONE = "+1 415 555 0100"
BOMB_BYTES = 64 * 1024 * 1024
HUGE_BYTES = 1024**3
DRIP_INTERVAL = 0.1
SAMPLE_PORT = 18080
"""The port of every host when the web is served for the DataIngest sample."""


def endless(total: int, *, declare_length: bool) -> Route:
    """A body of `total` bytes, generated as it is sent (never held in memory)."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        if declare_length:
            handler.send_header("Content-Length", str(total))
        handler.end_headers()
        chunk = b"<p>" + b"x" * (64 * 1024 - 3)
        sent = 0
        while sent < total:
            handler.wfile.write(chunk)
            sent += len(chunk)

    return route


def drip(interval: float, seconds: float) -> Route:
    """A body sent one byte every `interval` seconds, for `seconds`."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.end_headers()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(interval)

    return route


@dataclass
class LocalWeb:
    """The whole web: its sites, the request log, and what a crawl of it should keep."""

    sites: dict[str, Site]
    log: RequestLog
    clusters: dict[str, str] = field(default_factory=dict)
    """Cluster of every page that should yield a document: copies share their original's."""
    near_pairs: set[tuple[str, str]] = field(default_factory=set)
    """(original URL, near copy URL) for every planted near duplicate."""
    exact_pairs: set[tuple[str, str]] = field(default_factory=set)

    def url(self, site: str, path: str) -> str:
        return self.sites[site].url(path)

    @property
    def allowed_networks(self) -> list[str]:
        return [f"{ADDRESSES[name]}/32" for name in (*CRAWLED_HOSTS, "hostile")]

    @property
    def crawled_domains(self) -> list[str]:
        return [ADDRESSES[name] for name in CRAWLED_HOSTS]


def build_web(port: int = 0) -> LocalWeb:
    """Starts every site, each on `port` of its own address (call `stop_web` afterwards)."""
    log = RequestLog()
    sites = {name: Site(name, address, log, port) for name, address in ADDRESSES.items()}
    for site in sites.values():
        site.start()
    web = LocalWeb(sites=sites, log=log)
    owner = {module: host for host, modules in MODULES.items() for module in modules}
    urls = {module: sites[host].url(f"/{module}.html") for module, host in owner.items()}
    pages = {module: rewrite_links(module_page(module), urls) for module in owner}

    for host, modules in MODULES.items():
        site = sites[host]
        for module in modules:
            site.routes[f"/{module}.html"] = content(pages[module].encode())
            web.clusters[site.url(f"/{module}.html")] = module
    a, b, c = sites["docs-a"], sites["docs-b"], sites["docs-c"]
    mirror, down, hostile = sites["mirror"], sites["down"], sites["hostile"]

    a.routes["/robots.txt"] = content(
        f"User-agent: *\nDisallow: /private/\nSitemap: {a.url('/sitemap.xml')}\n".encode(),
        "text/plain",
    )
    a.routes["/private/secret.html"] = content(b"<html><body><p>secret</p></body></html>")
    a.routes["/sitemap.xml"] = content(
        (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<url><loc>{a.url('/orphan.html')}</loc></url></urlset>"
        ).encode(),
        "application/xml",
    )
    orphan = index_page("A page only the sitemap lists", [(a.url("/"), "home")]).replace(
        b"<ul>", b"<p>Nothing links to this page; the crawler finds it in the sitemap.</p><ul>"
    )
    a.routes["/orphan.html"] = content(orphan)
    web.clusters[a.url("/orphan.html")] = "orphan"
    a.routes["/thin.html"] = content(b"<html><body><p>Too short to keep.</p></body></html>")
    pii = f"<p>Write to {PII_EMAIL} or call {PII_PHONE} about this test web.</p>"
    a.routes["/"] = content(
        index_page(
            "docs-a",
            [(f"/{m}.html", m) for m in MODULES["docs-a"]]
            + [
                (b.url("/"), "docs-b"),
                (mirror.url("/"), "mirror"),
                (down.url("/"), "down"),
                ("/private/secret.html", "private"),
                ("/thin.html", "thin"),
                ("https://docs.python.org/3/", "Python documentation"),
            ],
            pii,
        )
    )
    web.clusters[a.url("/")] = "index-a"

    b.routes["/robots.txt"] = content(
        (
            f"User-agent: {PRODUCT}\nCrawl-delay: {CRAWL_DELAY}\nDisallow: /nobots/\n\n"
            "User-agent: *\nDisallow: /\n"
        ).encode(),
        "text/plain",
    )
    b.routes["/nobots/page.html"] = content(b"<html><body><p>not for us</p></body></html>")
    b.routes["/"] = content(
        index_page(
            "docs-b",
            [(f"/{m}.html", m) for m in MODULES["docs-b"]]
            + [(c.url("/"), "docs-c"), ("/nobots/page.html", "nobots")],
        )
    )
    web.clusters[b.url("/")] = "index-b"
    c.routes["/"] = content(
        index_page(
            "docs-c", [(f"/{m}.html", m) for m in MODULES["docs-c"]] + [(a.url("/"), "docs-a")]
        )
    )
    web.clusters[c.url("/")] = "index-c"

    copies = []
    for module in EXACT_COPIES:
        path = f"/copy/{module}.html"
        mirror.routes[path] = content(pages[module].encode())
        web.clusters[mirror.url(path)] = module
        web.exact_pairs.add((urls[module], mirror.url(path)))
        copies.append((path, f"copy of {module}"))
    for module in NEAR_COPIES:
        path = f"/near/{module}.html"
        mirror.routes[path] = content(near_copy(pages[module]).encode())
        web.clusters[mirror.url(path)] = module
        web.near_pairs.add((urls[module], mirror.url(path)))
        copies.append((path, f"near copy of {module}"))
    mirror.routes["/"] = content(index_page("mirror", copies))
    web.clusters[mirror.url("/")] = "index-mirror"

    down.routes["/robots.txt"] = status(500)
    down.routes["/"] = content(index_page("down", [("/page.html", "page")]))
    down.routes["/page.html"] = content(pages["json"].encode())

    zeros = bytes(BOMB_BYTES)
    hostile.routes["/gzip-bomb"] = content(gzip.compress(zeros, 9), **{"Content-Encoding": "gzip"})
    hostile.routes["/brotli-bomb"] = content(
        brotli.compress(zeros, quality=5), **{"Content-Encoding": "br"}
    )
    hostile.routes["/zstd-bomb"] = content(
        zstandard.ZstdCompressor(level=3).compress(zeros), **{"Content-Encoding": "zstd"}
    )
    hostile.routes["/small-gzip"] = content(
        gzip.compress(pages["json"].encode()), **{"Content-Encoding": "gzip"}
    )
    hostile.routes["/loop"] = redirect("/loop-back")
    hostile.routes["/loop-back"] = redirect("/loop")
    for hop in range(30):
        hostile.routes[f"/chain/{hop}"] = redirect(f"/chain/{hop + 1}")
    hostile.routes["/huge"] = endless(HUGE_BYTES, declare_length=True)
    hostile.routes["/huge-undeclared"] = endless(HUGE_BYTES, declare_length=False)
    hostile.routes["/drip"] = drip(DRIP_INTERVAL, 30.0)
    hostile.routes["/to-metadata"] = redirect("http://169.254.169.254/latest/meta-data/")
    hostile.routes["/to-private"] = redirect("http://10.1.2.3/admin")
    hostile.routes["/to-mapped"] = redirect("http://[::ffff:169.254.169.254]/latest/")
    hostile.routes["/to-file"] = redirect("file:///etc/passwd")
    hostile.routes["/to-outside"] = redirect(sites["outside"].url("/secret.html"))
    hostile.routes["/retry-later"] = lambda handler: send(
        handler, 503, b"", {"Retry-After": "0", "Content-Type": "text/plain"}
    )
    sites["outside"].routes["/secret.html"] = content(pages["json"].encode())
    return web


def stop_web(web: LocalWeb) -> None:
    for site in web.sites.values():
        site.stop()


def requests_of(web: LocalWeb, host: str) -> Iterator[str]:
    """The paths a host was asked for, in order."""
    return (request.path for request in web.log.of(host))


if __name__ == "__main__":
    served = build_web(SAMPLE_PORT)
    print(f"the test web is served at {served.url('docs-a', '/')} and its neighbours; Ctrl-C ends")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stop_web(served)
