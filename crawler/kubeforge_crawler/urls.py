"""URLs: normalisation (so one page has one spelling), scope, and which shard owns a host.

A URL is normalised before it enters the seen-set: scheme and host lower-cased, default port
and fragment dropped, dot segments resolved, an empty path made `/`. Only http and https are
crawled. Hosts are split between shards by a stable hash of the host name, so every URL of a host
is fetched by one shard and per-host politeness holds across crawler pods.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


_ABSOLUTE_HTTP = re.compile(r"https?://", re.IGNORECASE)


def normalize(url: str, base: str | None = None) -> str | None:
    """The canonical form of an http(s) URL (resolved against `base`), or None for others."""
    url = url.strip()
    if base and not _ABSOLUTE_HTTP.match(url):
        try:
            url = urljoin(base, url)
        except ValueError:
            return None
    return _normalize_absolute(url)


# Pages repeat the same links (navigation, indexes), and every link is normalised again when
# the shard decides about it: remembering recent answers takes URL handling off the profile.
@functools.lru_cache(maxsize=1 << 16)
def _normalize_absolute(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = remove_dot_segments(parts.path) or "/"
    return urlunsplit(SplitResult(scheme, netloc, path, parts.query, ""))


def remove_dot_segments(path: str) -> str:
    """The path with `.` and `..` segments resolved (RFC 3986, section 5.2.4)."""
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        elif segment == ".":
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/".join(output)


def scheme_of(url: str) -> str:
    """The URL's scheme, lower-cased."""
    return urlsplit(url).scheme.lower()


def host_of(url: str) -> str:
    """The host name of a normalised URL (IPv6 without brackets)."""
    return urlsplit(url).hostname or ""


def origin_of(url: str) -> str:
    """scheme://host[:port] of a normalised URL: the unit of robots.txt and politeness."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def shard_of(host: str, shards: int) -> int:
    """The shard that owns a host: stable across processes, machines and Python versions."""
    digest = hashlib.sha256(host.lower().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


class Scope:
    """Which URLs the crawl may visit: allowed domains and include/exclude patterns."""

    def __init__(
        self,
        allowed_domains: Sequence[str],
        include_patterns: Sequence[str] = (),
        exclude_patterns: Sequence[str] = (),
    ) -> None:
        self.domains = tuple(domain.lower().strip("[]") for domain in allowed_domains)
        self.include = tuple(re.compile(pattern) for pattern in include_patterns)
        self.exclude = tuple(re.compile(pattern) for pattern in exclude_patterns)

    def allows(self, url: str) -> bool:
        """Whether a normalised URL is in scope."""
        host = host_of(url)
        if not any(host == domain or host.endswith(f".{domain}") for domain in self.domains):
            return False
        if self.include and not any(pattern.search(url) for pattern in self.include):
            return False
        return not any(pattern.search(url) for pattern in self.exclude)
