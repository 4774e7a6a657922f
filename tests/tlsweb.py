"""HTTPS hosts on loopback for the crawler's TLS tests, with certificates from a test CA.

Hosts (each its own loopback address; the certificates are `tests.certificates`'):

- valid: a certificate the test CA signed for its address and `localhost`; serves a page worth
  keeping, and `/to-http`, a redirect to the plain host.
- self-signed: a certificate no CA signed.
- expired: signed by the test CA, expired yesterday.
- wrong-host: signed by the test CA for another name (`wrong.example`).
- plain: plain HTTP, the target of the https → http redirect.

Each TLS host serves the same page, so only its certificate tells it apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubeforge.cli.localweb import (
    RequestLog,
    Site,
    content,
    module_page,
    redirect,
    rewrite_links,
)
from tests.certificates import Leaf, TestCa, self_signed, server_context

ADDRESSES = {
    "valid": "127.0.0.21",
    "self-signed": "127.0.0.22",
    "expired": "127.0.0.23",
    "wrong-host": "127.0.0.24",
    "plain": "127.0.0.25",
}
REFUSED_HOSTS = ("self-signed", "expired", "wrong-host")


@dataclass
class TlsWeb:
    """The TLS hosts, their request log, and the file of the CA that signed their certificates."""

    sites: dict[str, Site]
    log: RequestLog
    ca_file: Path

    def url(self, site: str, path: str) -> str:
        return self.sites[site].url(path)

    @property
    def allowed_networks(self) -> list[str]:
        return [f"{address}/32" for address in ADDRESSES.values()]


def _certificates(directory: Path) -> tuple[TestCa, dict[str, Leaf]]:
    ca = TestCa(directory)
    return ca, {
        "valid": ca.leaf("valid", [ADDRESSES["valid"], "localhost"]),
        "self-signed": self_signed(directory, "self-signed", [ADDRESSES["self-signed"]]),
        "expired": ca.leaf("expired", [ADDRESSES["expired"]], expired=True),
        "wrong-host": ca.leaf("wrong-host", ["wrong.example"]),
    }


def build_tls_web(directory: Path) -> TlsWeb:
    """Makes the CA and certificates in `directory` and starts every host (then `stop_tls_web`)."""
    ca, leaves = _certificates(directory)
    log = RequestLog()
    sites = {
        name: Site(
            name,
            address,
            log,
            tls=server_context(leaves[name]) if name in leaves else None,
        )
        for name, address in ADDRESSES.items()
    }
    page = content(rewrite_links(module_page("heapq"), {}).encode())
    for site in sites.values():
        site.routes["/"] = page
        site.start()
    sites["valid"].routes["/to-http"] = redirect(sites["plain"].url("/"))
    return TlsWeb(sites=sites, log=log, ca_file=ca.ca_file)


def stop_tls_web(web: TlsWeb) -> None:
    for site in web.sites.values():
        site.stop()
