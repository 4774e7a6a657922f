"""HTML to text and links, with selectolax (the Lexbor parser).

Chosen by measurement on 108 HTML pydoc renders of standard-library modules (the kind of page the
test web serves), one core: selectolax extracted text and links at about 390 pages/s, trafilatura
at about 7, and resiliparse's `extract_plain_text` needed up to 30 s for a single 430 KB page
(about 1.3 pages/s overall). One parse serves both the text and the links.

Script, style, navigation, header, footer, aside, form and template elements are removed; block
elements start new lines; whitespace in a line collapses. `<meta name="robots">` is honoured:
`noindex` drops the text, `nofollow` drops the links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser

EXTRACTOR = "selectolax-lexbor"
"""The extractor's name, recorded in every shard's marker."""

_REMOVED = "script, style, noscript, nav, header, footer, aside, form, template, svg, iframe"
_BLOCKS = (
    "p|div|br|li|tr|td|th|h1|h2|h3|h4|h5|h6|pre|dt|dd|blockquote|table|section|article|main|ul|"
    "ol|dl|hr"
)
# A line break before every opening and closing tag of a block element, inserted into the markup
# before parsing: one regex pass instead of a text node added per element through the tree.
# Case-insensitive through character classes: re.IGNORECASE makes this pass three times slower.
_BLOCK_TAG = re.compile(
    "<(?=/?(?:" + "".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in _BLOCKS) + r")[\s/>])"
)
_SPACES = re.compile(r"[^\S\n]+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_:.-]+)""", re.I)


@dataclass(frozen=True)
class Extracted:
    """What a page yields: its title, its text and the links it points to (unresolved)."""

    title: str | None
    text: str
    links: tuple[str, ...]


def decode_html(body: bytes, charset: str | None) -> str:
    """The page as text: the header's charset, else a <meta> charset, else UTF-8."""
    if charset is None:
        declared = _META_CHARSET.search(body[:4096])
        charset = declared.group(1).decode("ascii").lower() if declared else "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _lines(text: str) -> str:
    """Whitespace collapsed within lines, lines trimmed, empty lines dropped."""
    lines = _SPACES.sub(" ", text).split("\n")
    return "\n".join(filter(None, map(str.strip, lines)))


def extract_html(html: str) -> Extracted:
    """The title, main text and links of an HTML page."""
    tree = LexborHTMLParser(_BLOCK_TAG.sub("\n<", html))
    directives = {
        word.strip().lower()
        for meta in tree.css('meta[name="robots" i]')
        for word in (meta.attributes.get("content") or "").split(",")
    }
    links: tuple[str, ...] = ()
    if "nofollow" not in directives and "none" not in directives:
        links = tuple(
            href
            for anchor in tree.css("a[href]")
            if (href := anchor.attributes.get("href"))
            and "nofollow" not in (anchor.attributes.get("rel") or "")
        )
    title_node = tree.css_first("title")
    title = " ".join(title_node.text().split()) if title_node is not None else None
    if "noindex" in directives or "none" in directives or tree.body is None:
        return Extracted(title=title or None, text="", links=links)
    for node in tree.css(_REMOVED):
        node.decompose()
    text = _lines(tree.body.text(separator="", strip=False))
    return Extracted(title=title or None, text=text, links=links)


def extract_plain(text: str) -> Extracted:
    """A text/plain page: its lines, no title, no links."""
    return Extracted(title=None, text=_lines(text), links=())
