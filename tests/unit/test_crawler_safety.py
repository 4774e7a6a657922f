"""The crawler's safety pieces as pure functions: the address policy, URLs and scope, bounded
decompression, Retry-After. Real codecs (zlib, brotli, zstandard) make the bombs; nothing is faked.
"""

from __future__ import annotations

import gzip
import zlib
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import brotli  # type: ignore[import-untyped]
import pytest
import zstandard

from kubeforge_crawler.addresses import AddressPolicy, embedded_ipv4, literal_address
from kubeforge_crawler.decoding import (
    BodyFull,
    BodyTooLarge,
    BoundedBody,
    UnsupportedEncoding,
    decoder_for,
)
from kubeforge_crawler.fetch import retry_after_seconds
from kubeforge_crawler.politeness import host_delay
from kubeforge_crawler.urls import Scope, normalize, origin_of, shard_of


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.100.100.200",
        "0.0.0.0",  # noqa: S104 -- an address to refuse, not one to bind
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:a9fe:a9fe::1",
        "::7f00:1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert AddressPolicy().refusal(address) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert AddressPolicy().refusal(address) is None


def test_the_allowlist_opens_networks_also_when_carried_in_ipv6() -> None:
    policy = AddressPolicy(["10.20.0.0/16"])
    assert policy.refusal("10.20.3.4") is None
    assert policy.refusal("::ffff:10.20.3.4") is None
    assert policy.refusal("10.21.0.1") is not None


def test_ipv4_carried_by_ipv6_is_found() -> None:
    assert embedded_ipv4(IPv6Address("::ffff:1.2.3.4")) == IPv4Address("1.2.3.4")
    assert embedded_ipv4(IPv6Address("2001:db8::1")) is None
    assert literal_address("[::1]") == "::1"
    assert literal_address("example.com") is None


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("HTTP://Example.COM:80/a/./b/../c?x=1#frag", "http://example.com/a/c?x=1"),
        ("https://example.com:443", "https://example.com/"),
        ("http://example.com:8080/a/b/../../..", "http://example.com:8080/"),
        ("http://[::1]:8080/x/../", "http://[::1]:8080/"),
        ("mailto:someone@example.com", None),
        ("file:///etc/passwd", None),
        ("javascript:alert(1)", None),
        ("http://example.com:99999/", None),
    ],
)
def test_urls_have_one_spelling(url: str, normalized: str | None) -> None:
    assert normalize(url) == normalized


def test_relative_links_resolve_against_the_page() -> None:
    assert (
        normalize("../b.html#x", base="http://h.example/d/e/a.html") == "http://h.example/d/b.html"
    )
    assert origin_of("http://h.example:81/a") == "http://h.example:81"


def test_scope_takes_subdomains_and_patterns() -> None:
    scope = Scope(["example.com"], include_patterns=[r"/docs/"], exclude_patterns=[r"\.pdf$"])
    assert scope.allows("https://docs.example.com/docs/a.html")
    assert not scope.allows("https://docs.example.com/blog/a.html")
    assert not scope.allows("https://example.com/docs/a.pdf")
    assert not scope.allows("https://notexample.com/docs/a.html")


def test_every_shard_owns_hosts_and_ownership_is_stable() -> None:
    hosts = [f"host{index}.example" for index in range(200)]
    owners = [shard_of(host, 4) for host in hosts]
    assert set(owners) == {0, 1, 2, 3}
    assert owners == [shard_of(host.upper(), 4) for host in hosts]


def test_crawl_delay_is_honoured_up_to_the_cap() -> None:
    assert host_delay(1.0, None, 30.0) == 1.0
    assert host_delay(1.0, 5.0, 30.0) == 5.0
    assert host_delay(1.0, 120.0, 30.0) == 30.0
    assert host_delay(2.0, 0.5, 30.0) == 2.0


def decode(coding: str, data: bytes, limit: int) -> bytes:
    body = BoundedBody(limit)
    decoder = decoder_for(coding, body)
    for start in range(0, len(data), 4096):
        decoder.feed(data[start : start + 4096])
    decoder.finish()
    return body.bytes()


BOMB = bytes(32 * 1024 * 1024)


@pytest.mark.parametrize(
    ("coding", "compressed"),
    [
        ("gzip", gzip.compress(BOMB)),
        ("deflate", zlib.compress(BOMB)),
        ("br", brotli.compress(BOMB, quality=5)),
        ("zstd", zstandard.ZstdCompressor().compress(BOMB)),
    ],
)
def test_a_decompression_bomb_stops_at_the_limit(coding: str, compressed: bytes) -> None:
    body = BoundedBody(1024 * 1024)
    decoder = decoder_for(coding, body)
    with pytest.raises(BodyTooLarge):
        decoder.feed(compressed)
    assert body.size <= 1024 * 1024


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("br", brotli.compress),
        ("zstd", zstandard.ZstdCompressor().compress),
    ],
)
def test_a_body_within_the_limit_decodes_whole(coding: str, compress: Any) -> None:
    text = b"<p>kubeforge</p>" * 10000
    assert decode(coding, compress(text), len(text)) == text
    with pytest.raises(BodyTooLarge):
        decode(coding, compress(text), len(text) - 1)


def test_raw_deflate_several_gzip_members_and_stacked_codings_decode() -> None:
    text = b"hello, crawler " * 100
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decode("deflate", raw.compress(text) + raw.flush(), 10**6) == text
    assert decode("gzip", gzip.compress(text) + gzip.compress(text), 10**6) == text * 2
    stacked = brotli.compress(gzip.compress(text))
    assert decode("gzip, br", stacked, 10**6) == text


def test_an_unknown_coding_is_refused() -> None:
    with pytest.raises(UnsupportedEncoding):
        decoder_for("compress", BoundedBody(10))


def test_a_truncating_body_keeps_the_first_bytes() -> None:
    body = BoundedBody(5, truncate=True)
    body(b"abc")
    with pytest.raises(BodyFull):
        body(b"defgh")
    assert body.bytes() == b"abcde"


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Thu, 01 Jan 2037 00:00:10 GMT", now=2114380800.0) == 10.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
