"""A small web of real text on loopback: the demo's data source, and the base of the test web.

The text is real and nothing is downloaded: pydoc's HTML pages of installed standard-library
modules, whose links between modules are rewritten to the host that serves each module. Each
host is a real HTTP server on its own loopback address (`Site`). `build_demo_web` serves the
demo's web: two documentation hosts and a mirror with exact and near copies (so deduplication
has work), and a robots.txt that disallows part of one host (so the report shows drops).
`tests/testweb.py` builds its hostile multi-host web from the same pieces.
"""

from __future__ import annotations

import importlib
import pydoc
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Route = Callable[[BaseHTTPRequestHandler], None]

DEMO_PORT = 18090
"""The port of every demo host: the demo's DataIngest (kubeforge/cli/demos/gpt.yaml) crawls it."""
DEMO_ADDRESSES = {"docs-a": "127.0.0.11", "docs-b": "127.0.0.13", "mirror": "127.0.0.12"}
DEMO_MODULES = {
    "docs-a": ("json", "csv", "textwrap", "heapq", "bisect", "fractions", "shlex", "difflib"),
    "docs-b": ("glob", "fnmatch", "base64", "secrets", "copy", "pprint", "queue", "statistics"),
}
DEMO_EXACT_COPIES = ("json", "glob")
DEMO_NEAR_COPIES = ("csv", "queue")
NEAR_COPY_EVERY = 150


@dataclass(frozen=True)
class Request:
    """One request a server received."""

    host: str
    path: str
    at: float


class RequestLog:
    """The requests every server received, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Request] = []

    def add(self, request: Request) -> None:
        with self._lock:
            self._requests.append(request)

    def of(self, host: str) -> list[Request]:
        with self._lock:
            return [request for request in self._requests if request.host == host]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()


def send(
    handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]
) -> None:
    handler.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **headers}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def content(body: bytes, content_type: str = "text/html; charset=utf-8", **headers: str) -> Route:
    return lambda handler: send(handler, 200, body, {"Content-Type": content_type, **headers})


def status(code: int) -> Route:
    return lambda handler: send(handler, code, b"", {"Content-Type": "text/plain"})


def redirect(location: str, code: int = 302) -> Route:
    return lambda handler: send(handler, code, b"", {"Location": location})


class _Handler(BaseHTTPRequestHandler):
    site: Site

    def do_GET(self) -> None:
        self.site.log.add(Request(self.site.name, self.path, time.monotonic()))
        route = self.site.routes.get(self.path.split("?", 1)[0], status(404))
        try:
            route(self)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        return


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


@dataclass
class Site:
    """One host of a web: its name, address, routes and server."""

    name: str
    address: str
    log: RequestLog
    port: int = 0  # 0: any free port
    routes: dict[str, Route] = field(default_factory=dict)
    server: ThreadingHTTPServer | None = None
    tls: ssl.SSLContext | None = None
    """Serve HTTPS with this context's certificate."""

    def start(self) -> None:
        handler = type(f"Handler_{self.name}", (_Handler,), {"site": self})
        self.server = _QuietServer((self.address, self.port), handler)
        if self.tls is not None:
            # The handshake happens in the request's thread, so a client that refuses the
            # certificate (or stalls) never blocks the accepting loop.
            self.server.socket = self.tls.wrap_socket(
                self.server.socket, server_side=True, do_handshake_on_connect=False
            )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def origin(self) -> str:
        assert self.server is not None
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{self.address}:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.origin + path


def module_page(module_name: str) -> str:
    """pydoc's HTML page of a module."""
    module = importlib.import_module(module_name)
    return pydoc.html.page(pydoc.describe(module), pydoc.html.document(module, module_name))


def near_copy(html: str, every: int = NEAR_COPY_EVERY) -> str:
    """The page with one word in every `every` of its text replaced."""
    counter = iter(range(10**9))

    def words(match: re.Match[str]) -> str:
        return re.sub(
            r"[A-Za-z]{3,}",
            lambda word: "lorem" if next(counter) % every == every - 1 else word.group(0),
            match.group(0),
        )

    return re.sub(r">[^<>]+<", words, html)


def rewrite_links(html: str, module_urls: dict[str, str]) -> str:
    """Module links point at the URL serving the module; other module links go nowhere."""

    def rewrite(match: re.Match[str]) -> str:
        name, anchor = match.group(1), match.group(2) or ""
        if name in module_urls:
            return f'href="{module_urls[name]}{anchor}"'
        return f'href="#{name}"'

    html = re.sub(r'href="([\w.]+)\.html(#[^"]*)?"', rewrite, html)
    return html.replace('href="."', 'href="/"')


def index_page(title: str, links: list[tuple[str, str]], extra: str = "") -> bytes:
    """A page of links, each followed by the first sentence of a module's docs when it is one."""

    def summary(text: str) -> str:
        try:
            module = importlib.import_module(text)
        except ImportError:
            return ""
        return ": " + pydoc.getdoc(module).split(".")[0] + "."

    items = "\n".join(
        f'<li><a href="{href}">{text}</a>{summary(text)}</li>' for href, text in links
    )
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body>"
        f"<nav><a href='/'>home</a></nav><h1>{title}</h1>"
        f"<p>This index lists the modules documented on this host, each with the first "
        f"sentence of its documentation, and links to the other hosts of this web.</p>"
        f"<ul>{items}</ul>{extra}</body></html>"
    ).encode()


@dataclass
class DemoWeb:
    sites: dict[str, Site]

    def seed(self) -> str:
        return self.sites["docs-a"].url("/")

    def stop(self) -> None:
        for site in self.sites.values():
            site.stop()


def build_demo_web(port: int = DEMO_PORT, addresses: Mapping[str, str] = DEMO_ADDRESSES) -> DemoWeb:
    """Starts the demo's web, each host on `port` of its address (by default its own loopback one).

    Hosts may share one address when `port` is 0: each then listens on a free port of its own
    (how the e2e tier serves the web on the one address where a cluster's pods reach this machine).
    """
    log = RequestLog()
    sites = {name: Site(name, addresses[name], log, port) for name in DEMO_ADDRESSES}
    for site in sites.values():
        site.start()
    owner = {module: host for host, modules in DEMO_MODULES.items() for module in modules}
    urls = {module: sites[host].url(f"/{module}.html") for module, host in owner.items()}
    pages = {module: rewrite_links(module_page(module), urls) for module in owner}
    for host, modules in DEMO_MODULES.items():
        for module in modules:
            sites[host].routes[f"/{module}.html"] = content(pages[module].encode())
    a, b, mirror = sites["docs-a"], sites["docs-b"], sites["mirror"]
    a.routes["/robots.txt"] = content(b"User-agent: *\nDisallow: /drafts/\n", "text/plain")
    a.routes["/drafts/notes.html"] = content(b"<html><body><p>not for crawlers</p></body></html>")
    a.routes["/"] = content(
        index_page(
            "docs-a",
            [(f"/{m}.html", m) for m in DEMO_MODULES["docs-a"]]
            + [
                (b.url("/"), "docs-b"),
                (mirror.url("/"), "mirror"),
                ("/drafts/notes.html", "drafts"),
            ],
        )
    )
    b.routes["/"] = content(
        index_page("docs-b", [(f"/{m}.html", m) for m in DEMO_MODULES["docs-b"]])
    )
    copies = []
    for module in DEMO_EXACT_COPIES:
        mirror.routes[f"/copy/{module}.html"] = content(pages[module].encode())
        copies.append((f"/copy/{module}.html", f"copy of {module}"))
    for module in DEMO_NEAR_COPIES:
        mirror.routes[f"/near/{module}.html"] = content(near_copy(pages[module]).encode())
        copies.append((f"/near/{module}.html", f"near copy of {module}"))
    mirror.routes["/"] = content(index_page("mirror", copies))
    return DemoWeb(sites)
