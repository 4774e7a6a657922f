"""The crawler over HTTPS: certificates and host names verified, extra CAs, the redirect policy.

Real: HTTPS servers on 127.0.0.x with certificates from a CA the tests make (`tests.tlsweb`),
the crawler's downloader and whole shards run in this process. A certificate that does not
verify is refused with its own reason, before any HTTP request reaches its host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeforge.api.dataingest import CrawlPolicy, DropReason
from kubeforge.crawlconfig import EXIT_CONFIG, CrawlerConfig
from kubeforge.dataset import ShardMarker
from kubeforge_crawler.__main__ import main as crawler_main
from tests.tlsweb import ADDRESSES, REFUSED_HOSTS, TlsWeb
from tests.workloads.crawls import FILTERS, crawl_in_process, crawl_policy, fetch, refusal


def policy(web: TlsWeb) -> CrawlPolicy:
    return CrawlPolicy.model_validate(crawl_policy(web, retries=0))


def test_a_site_signed_by_the_extra_ca_is_fetched(tls_web: TlsWeb) -> None:
    response = fetch(policy(tls_web), tls_web.url("valid", "/"), str(tls_web.ca_file))
    assert response.status == 200
    assert response.body.startswith(b"<!DOCTYPE html>")


def test_without_the_extra_ca_the_site_is_untrusted(tls_web: TlsWeb) -> None:
    assert refusal(policy(tls_web), tls_web.url("valid", "/")) == DropReason.TLS_UNTRUSTED


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("self-signed", DropReason.TLS_UNTRUSTED),
        ("expired", DropReason.TLS_EXPIRED),
        ("wrong-host", DropReason.TLS_HOST_MISMATCH),
    ],
)
def test_a_certificate_that_does_not_verify_is_refused_with_its_reason(
    tls_web: TlsWeb, host: str, reason: DropReason
) -> None:
    tls_web.log.clear()
    url = tls_web.url(host, "/")
    assert refusal(policy(tls_web), url, str(tls_web.ca_file)) == reason
    assert tls_web.log.of(host) == [], "no HTTP request is sent over an unverified connection"


def tls_crawl(web: TlsWeb, tmp_path: Path, seeds: list[str], **tls: Any) -> ShardMarker:
    """A one-shard crawl of `seeds` that trusts the test CA, with these `crawl.tls` fields."""
    config = CrawlerConfig.model_validate(
        {
            "datasetUri": tmp_path.as_uri(),
            "shards": 1,
            "sources": {"seeds": seeds, "allowedDomains": list(ADDRESSES.values())},
            "crawl": crawl_policy(web, tls=tls),
            "processing": {"filters": FILTERS},
            "caFile": str(web.ca_file),
            "pollSeconds": 0.1,
        }
    )
    (marker,) = crawl_in_process(config)
    return marker


def test_a_crawl_keeps_the_valid_site_and_drops_each_bad_certificate(
    tls_web: TlsWeb, tmp_path: Path
) -> None:
    tls_web.log.clear()
    seeds = [tls_web.url(host, "/") for host in ("valid", *REFUSED_HOSTS)]
    counters = tls_crawl(tls_web, tmp_path, seeds).counters
    assert counters.documents_kept == 1
    # robots.txt is each host's first request: its certificate refuses the host for good, so
    # the seed is dropped with the certificate's reason, not as RobotsUnavailable.
    assert counters.dropped_by_reason == {
        DropReason.TLS_UNTRUSTED: 1,
        DropReason.TLS_EXPIRED: 1,
        DropReason.TLS_HOST_MISMATCH: 1,
        DropReason.OFF_SCOPE: 1,  # the kept page's link to docs.python.org
    }
    assert all(tls_web.log.of(host) == [] for host in REFUSED_HOSTS)


def test_an_https_to_http_redirect_is_refused_by_default(tls_web: TlsWeb, tmp_path: Path) -> None:
    tls_web.log.clear()
    counters = tls_crawl(tls_web, tmp_path, [tls_web.url("valid", "/to-http")]).counters
    assert counters.dropped_by_reason == {DropReason.INSECURE_REDIRECT: 1}
    assert counters.documents_kept == 0
    assert tls_web.log.of("plain") == []


def test_an_https_to_http_redirect_is_followed_when_allowed(
    tls_web: TlsWeb, tmp_path: Path
) -> None:
    tls_web.log.clear()
    seeds = [tls_web.url("valid", "/to-http")]
    counters = tls_crawl(tls_web, tmp_path, seeds, allowHttpsToHttpRedirects=True).counters
    assert counters.documents_kept == 1
    assert [request.path for request in tls_web.log.of("plain")] == ["/robots.txt", "/"]


@pytest.mark.parametrize("content", [None, "no certificate here\n"])
def test_a_ca_file_that_cannot_be_used_is_a_config_error(
    tls_web: TlsWeb, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    ca_file = tmp_path / "ca.crt"
    if content is not None:
        ca_file.write_text(content)
    config = {
        "datasetUri": (tmp_path / "dataset").as_uri(),
        "shards": 1,
        "sources": {"seeds": [tls_web.url("valid", "/")]},
        "crawl": crawl_policy(tls_web),
        "caFile": str(ca_file),
    }
    config_path = tmp_path / "crawler.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert crawler_main(["--config", str(config_path)]) == EXIT_CONFIG
    assert f"caFile {ca_file}" in capsys.readouterr().err
