"""URL blocklists (`filters.url`): blocked domains with their subdomains, whole words of the URL
and substrings of its letters and digits, as datatrove's URLFilter matches its lists."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from kubeforge.api.filters import UrlBlocklist
from kubeforge_crawler.filters.base import Document, first_tripped

NAME = "UrlBlocklist"
_NOT_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")


class UrlBlocklistFilter:
    """Drops documents whose URL a blocklist names."""

    def __init__(self, blocklist: UrlBlocklist) -> None:
        self.domains = frozenset(blocklist.domains)
        self.words = frozenset(blocklist.words)
        # One alternation: the regex engine scans the URL once for every substring.
        self.substrings = (
            re.compile("|".join(map(re.escape, sorted(blocklist.substrings))))
            if blocklist.substrings
            else None
        )

    def __call__(self, document: Document) -> str | None:
        url = document.url.lower()
        return first_tripped(
            [
                (f"{NAME}:domain", lambda: self._blocked_domain(url)),
                (f"{NAME}:word", lambda: not self.words.isdisjoint(_NOT_ALPHANUMERIC.split(url))),
                (f"{NAME}:substring", lambda: self._blocked_substring(url)),
            ]
        )

    def _blocked_domain(self, url: str) -> bool:
        labels = (urlsplit(url).hostname or "").split(".")
        return any(".".join(labels[start:]) in self.domains for start in range(len(labels)))

    def _blocked_substring(self, url: str) -> bool:
        return bool(self.substrings and self.substrings.search(_NOT_ALPHANUMERIC.sub("", url)))
