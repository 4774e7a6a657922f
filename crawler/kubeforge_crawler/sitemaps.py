"""Sitemaps (sitemaps.org): the page URLs of a `<urlset>` and the sitemaps of a
`<sitemapindex>`, from XML that may be gzip-compressed (`.xml.gz`).

Decompression is bounded like any body, and Python's expat refuses entity-expansion bombs.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

from kubeforge_crawler.decoding import BoundedBody, decoder_for

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Sitemap:
    """What a sitemap lists."""

    pages: tuple[str, ...]
    sitemaps: tuple[str, ...]


def _local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse_sitemap(body: bytes, max_bytes: int) -> Sitemap:
    """The URLs a sitemap or sitemap index lists; raises ValueError on what is not one."""
    if body.startswith(_GZIP_MAGIC):
        inflated = BoundedBody(max_bytes)
        decoder = decoder_for("gzip", inflated)
        decoder.feed(body)
        decoder.finish()
        body = inflated.bytes()
    try:
        root = ElementTree.fromstring(body)  # noqa: S314 -- expat refuses expansion bombs
    except ElementTree.ParseError as error:
        raise ValueError(f"not a sitemap: {error}") from None
    kind = _local_name(root.tag)
    if kind not in {"urlset", "sitemapindex"}:
        raise ValueError(f"not a sitemap: the root element is <{kind}>")
    locations = tuple(
        (element.text or "").strip()
        for element in root.iter()
        if _local_name(element.tag) == "loc" and (element.text or "").strip()
    )
    if kind == "urlset":
        return Sitemap(pages=locations, sitemaps=())
    return Sitemap(pages=(), sitemaps=locations)
