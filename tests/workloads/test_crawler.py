"""The crawler against a real local web: politeness, robots.txt, dedup, hostile servers, resume.

Real: HTTP servers on 127.0.0.x serving pydoc pages of the standard library (`testweb`), the
crawler's own code end to end (asyncio fetching, robots.txt, extraction, filters, dedup, parts,
markers, manifest, the version's BPE tokenizer), the S3 server for the resume test, and crawler
processes started with the command the operator puts into its pods. Nothing is faked. The test
web is the only thing contacted: every other address a page or redirect names is refused before
any connection.

Near-duplicate precision and recall on the planted copies are printed (run with -s to see them).
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from kubeforge.api.dataingest import CrawlPolicy, DropReason
from kubeforge.crawlconfig import publish_command
from kubeforge.dataset import (
    Document,
    Manifest,
    ShardMarker,
    iter_documents,
    kept_documents,
    read_manifest,
    read_part,
    read_shard_marker,
)
from kubeforge.storage import ObjectStore, S3Store, open_store
from kubeforge_crawler.checkpoint import load_state
from kubeforge_crawler.publish import publish
from kubeforge_crawler.urls import shard_of
from kubeforge_trainer.tokenizer import BpeTokenizer
from tests.conftest import REPO_ROOT, Rig
from tests.polling import wait_for
from tests.testweb import (
    ADDRESSES,
    CRAWL_DELAY,
    PII_EMAIL,
    PII_PHONE,
    SHARD_OF_HOST,
    LocalWeb,
    requests_of,
)
from tests.workloads.crawls import (
    THIN_PAGE_DROP,
    crawl_in_process,
    crawl_policy,
    fetch,
    refusal,
    run_shard,
    s3_environment,
    web_config,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SHARDS = 2


@dataclass(frozen=True)
class Crawl:
    """A finished crawl of the whole test web and what it left in storage."""

    store: ObjectStore
    markers: list[ShardMarker]
    manifest: Manifest
    documents: list[Document]
    requests: dict[str, list[str]]


@pytest.fixture(scope="module")
def crawl(web: LocalWeb, tmp_path_factory: pytest.TempPathFactory) -> Crawl:
    web.log.clear()
    config = web_config(web, (tmp_path_factory.mktemp("crawl") / "v1").as_uri(), SHARDS)
    markers = crawl_in_process(config)
    store = open_store(config.dataset_uri)
    manifest = publish(store, config)
    requests = {host: list(requests_of(web, host)) for host in ADDRESSES}
    return Crawl(store, markers, manifest, list(iter_documents(store, manifest)), requests)


def test_two_shards_split_the_hosts() -> None:
    owners = {host: shard_of(ADDRESSES[host], SHARDS) for host in SHARD_OF_HOST}
    assert owners == SHARD_OF_HOST


def test_every_page_is_kept_once_and_every_duplicate_removed(crawl: Crawl, web: LocalWeb) -> None:
    kept = collections.Counter(
        web.clusters.get(document.url, document.url) for document in crawl.documents
    )
    assert kept == collections.Counter(set(web.clusters.values()))
    urls = [document.url for document in crawl.documents]
    assert len(urls) == len(set(urls))


def test_the_manifest_sizes_each_part_by_the_text_it_keeps(crawl: Crawl) -> None:
    assert any(part.removed for part in crawl.manifest.parts)
    for part in crawl.manifest.parts:
        documents = read_part(crawl.store, part.key, part.sha256)
        kept = [document.text for document in documents if document.id not in part.removed]
        assert part.text_bytes == sum(len(text.encode("utf-8")) for text in kept), part.key


def test_the_version_carries_its_tokenizer_and_each_parts_tokens(crawl: Crawl) -> None:
    info = crawl.manifest.tokenizer
    assert info is not None
    data = crawl.store.get(info.key)
    assert hashlib.sha256(data).hexdigest() == info.sha256
    tokenizer = BpeTokenizer(data, info.key, info.end_of_document)
    assert tokenizer.vocab_size == info.vocab_size <= 512
    for part in crawl.manifest.parts:
        texts = [document.text for document in kept_documents(crawl.store, part)]
        assert part.tokens == len(tokenizer.encode_documents(texts)), part.key
        assert all(tokenizer.decode(tokenizer.encode(text)) == text for text in texts)


def test_near_duplicates_are_found_with_full_precision_and_recall(
    crawl: Crawl, web: LocalWeb
) -> None:
    kept = {document.url for document in crawl.documents}
    crawled = set(web.clusters)
    removed = crawled - kept
    planted = {copy for pair in web.near_pairs | web.exact_pairs for copy in pair}
    true_removals = {
        url
        for url in removed
        if url in planted and any(web.clusters[url] == web.clusters[other] for other in kept)
    }
    precision = len(true_removals) / len(removed)
    recall = len(true_removals) / (len(web.near_pairs) + len(web.exact_pairs))
    print(
        f"\nplanted duplicates: {len(web.near_pairs)} near, {len(web.exact_pairs)} exact; "
        f"removed {len(removed)}; precision {precision:.2f}, recall {recall:.2f}"
    )
    assert (precision, recall) == (1.0, 1.0)
    dropped = collections.Counter[str]()
    for marker in crawl.markers:
        dropped.update(marker.counters.dropped_by_reason)
    in_shards = dropped[DropReason.EXACT_DUPLICATE] + dropped[DropReason.NEAR_DUPLICATE]
    assert in_shards + crawl.manifest.duplicates_removed == len(removed)


def test_robots_txt_rules_are_obeyed_for_our_product_token(crawl: Crawl) -> None:
    assert "/private/secret.html" not in crawl.requests["docs-a"]
    assert "/nobots/page.html" not in crawl.requests["docs-b"]
    assert "/glob.html" in crawl.requests["docs-b"], "docs-b disallows only other agents"


def test_a_host_whose_robots_txt_fails_is_not_fetched(crawl: Crawl) -> None:
    assert set(crawl.requests["down"]) == {"/robots.txt"}
    counters = crawl.markers[SHARD_OF_HOST["down"]].counters
    assert counters.dropped_by_reason[DropReason.ROBOTS_UNAVAILABLE] >= 1


def test_crawl_delay_spaces_the_requests_to_a_host(web: LocalWeb, crawl: Crawl) -> None:
    times = [request.at for request in web.log.of("docs-b")]
    assert len(times) >= 8
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # Arrival times differ from send times by scheduling jitter on loopback, which a loaded machine
    # stretches: one late arrival shortens the gap after it. Over the whole run the jitter
    # cancels out (only the first and the last arrival count), so the span is the strict check;
    # no single gap may still come near a burst.
    assert times[-1] - times[0] >= (len(times) - 1) * CRAWL_DELAY - 0.1
    assert min(gaps) >= CRAWL_DELAY / 2


def test_a_page_only_the_sitemap_lists_is_crawled(crawl: Crawl, web: LocalWeb) -> None:
    assert web.url("docs-a", "/orphan.html") in {document.url for document in crawl.documents}


def test_personal_data_is_scrubbed(crawl: Crawl, web: LocalWeb) -> None:
    (index,) = [d for d in crawl.documents if d.url == web.url("docs-a", "/")]
    assert "<EMAIL>" in index.text
    assert "<PHONE>" in index.text
    assert PII_EMAIL not in index.text
    assert PII_PHONE not in index.text


def test_thin_pages_are_filtered_with_a_reason(crawl: Crawl) -> None:
    counters = crawl.markers[SHARD_OF_HOST["docs-a"]].counters
    assert counters.dropped_by_reason[THIN_PAGE_DROP] == 1
    assert counters.dropped_by_reason[DropReason.OFF_SCOPE] >= 1


def test_manifest_and_markers_record_counts_checksums_and_provenance(crawl: Crawl) -> None:
    provenance = {
        entry.id: entry
        for marker in crawl.markers
        for part in marker.parts
        for entry in part.provenance
    }
    for part in crawl.manifest.parts:
        documents = read_part(crawl.store, part.key, part.sha256)
        assert len(documents) == part.documents
        for document in documents:
            recorded = provenance[document.id]
            assert (recorded.url, recorded.content_hash) == (document.url, document.content_hash)
            assert recorded.fetched_at == document.fetched_at
            assert recorded.http_status == 200
    assert crawl.manifest.documents == len(crawl.documents)
    assert {field.name for field in crawl.manifest.schema_} >= {"url", "text", "content_hash"}
    assert all(marker.user_agent.startswith("KubeforgeTest/") for marker in crawl.markers)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/gzip-bomb", DropReason.TOO_LARGE),
        ("/brotli-bomb", DropReason.TOO_LARGE),
        ("/zstd-bomb", DropReason.TOO_LARGE),
        ("/huge", DropReason.TOO_LARGE),
        ("/huge-undeclared", DropReason.TOO_LARGE),
        ("/drip", DropReason.TIMEOUT),
    ],
)
def test_hostile_responses_are_refused_with_a_reason(
    web: LocalWeb, path: str, reason: DropReason
) -> None:
    policy = CrawlPolicy.model_validate(crawl_policy(web, retries=0))
    assert refusal(policy, web.url("hostile", path)) == reason


def test_a_compressed_page_within_the_limit_is_decoded(web: LocalWeb) -> None:
    policy = CrawlPolicy.model_validate(crawl_policy(web))
    response = fetch(policy, web.url("hostile", "/small-gzip"))
    assert response.body.startswith(b"<!DOCTYPE html>")
    assert response.wire_bytes < len(response.body)


def test_a_server_error_is_retried_then_returned(web: LocalWeb) -> None:
    web.log.clear()
    policy = CrawlPolicy.model_validate(crawl_policy(web, retries=2))
    assert fetch(policy, web.url("hostile", "/retry-later")).status == 503
    assert list(requests_of(web, "hostile")).count("/retry-later") == 3


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:{port}/secret.html",
        "http://127.0.0.1:{port}/secret.html",
        "http://[::ffff:127.0.0.1]:{port}/secret.html",
    ],
)
def test_loopback_is_refused_unless_allowlisted(web: LocalWeb, url: str) -> None:
    outside = web.sites["outside"]
    assert outside.server is not None
    target = url.format(port=outside.server.server_address[1])
    policy = CrawlPolicy.model_validate(crawl_policy(web))
    assert refusal(policy, target) == DropReason.BLOCKED_ADDRESS
    allowlisted = CrawlPolicy.model_validate(
        crawl_policy(web, allowedNetworks=["127.0.0.0/8", "::1/128"])
    )
    if "::ffff" not in url:
        assert fetch(allowlisted, target).status == 200


def hostile_crawl(web: LocalWeb, tmp_path: Path, *, allow_outside: bool) -> ShardMarker:
    """A crawl of the hostile redirects, and of the outside host by a name that resolves to
    loopback (`localhost`)."""
    paths = ["/loop", "/chain/0", "/to-metadata", "/to-private", "/to-mapped", "/to-file"]
    networks = web.allowed_networks + (["127.0.0.1/32", "::1/128"] if allow_outside else [])
    by_name = web.url("outside", "/secret.html").replace(ADDRESSES["outside"], "localhost")
    config = web_config(
        web,
        tmp_path.as_uri(),
        1,
        seeds=[*(web.url("hostile", path) for path in [*paths, "/to-outside"]), by_name],
        domains=[ADDRESSES["hostile"], ADDRESSES["outside"], "localhost"],
        crawl=crawl_policy(web, allowedNetworks=networks),
    )
    (marker,) = crawl_in_process(config)
    return marker


def test_redirects_to_hostile_places_are_refused(web: LocalWeb, tmp_path: Path) -> None:
    web.log.clear()
    dropped = hostile_crawl(web, tmp_path, allow_outside=False).counters.dropped_by_reason
    assert dropped == {
        DropReason.REDIRECT_LOOP: 1,
        DropReason.TOO_MANY_REDIRECTS: 1,
        # metadata, 10.x, IPv4-mapped metadata, 127.0.0.1, and localhost by name
        DropReason.BLOCKED_ADDRESS: 5,
        DropReason.UNSUPPORTED_SCHEME: 1,
    }
    assert web.log.of("outside") == []


def test_a_redirect_to_an_allowlisted_address_is_followed(web: LocalWeb, tmp_path: Path) -> None:
    web.log.clear()
    marker = hostile_crawl(web, tmp_path, allow_outside=True)
    assert list(requests_of(web, "outside")).count("/secret.html") == 2  # by address and name
    assert marker.counters.documents_kept == 1
    assert marker.counters.dropped_by_reason[DropReason.EXACT_DUPLICATE] == 1


@pytest.fixture
def shard_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def start_shards(
    web: LocalWeb,
    rig: Rig,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> tuple[Path, S3Store]:
    """Every shard of a crawl of the test web into `bucket`, as pods; returns the config's path
    and the dataset's store, once the slow shard (docs-b asks for a Crawl-delay) has committed
    its first part and still has work."""
    config = web_config(web, f"s3://{bucket}/datasets/web/v1", SHARDS)
    config_path = tmp_path / "crawler.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True)))
    store = S3Store(bucket, "datasets/web/v1", s3)
    processes += [
        run_shard(config_path, shard, s3_environment(rig), tmp_path) for shard in range(SHARDS)
    ]
    slow = SHARD_OF_HOST["docs-b"]

    def committed_a_part_and_working() -> bool:
        state = load_state(store, slow)
        return state is not None and bool(state.parts) and not state.idle

    wait_for(committed_a_part_and_working, f"shard {slow} to commit its first part", 60)
    return config_path, store


def publish_every_page_once(config_path: Path, rig: Rig, store: S3Store, web: LocalWeb) -> None:
    """Publishes the crawl and checks the dataset holds every page of the web once."""
    publisher = subprocess.run(
        publish_command(str(config_path), python=sys.executable),
        env=s3_environment(rig),
        capture_output=True,
        check=False,
    )
    assert publisher.returncode == 0, publisher.stderr.decode()
    manifest = read_manifest(store)
    assert manifest.tokenizer is not None
    assert store.exists(manifest.tokenizer.key), "the version's tokenizer.json"
    urls = [document.url for document in iter_documents(store, manifest)]
    assert len(urls) == len(set(urls)), "no document twice"
    kept = collections.Counter(web.clusters.get(url, url) for url in urls)
    assert kept == collections.Counter(set(web.clusters.values())), "every page once"


@pytest.mark.integration
def test_a_shard_killed_mid_crawl_resumes_without_duplicates_or_losses(
    web: LocalWeb,
    rig: Rig,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    shard_processes: list[subprocess.Popen[bytes]],
) -> None:
    config_path, store = start_shards(web, rig, s3, bucket, tmp_path, shard_processes)
    victim = SHARD_OF_HOST["docs-b"]  # the slow shard: still working
    shard_processes[victim].send_signal(signal.SIGKILL)
    assert shard_processes[victim].wait() == -signal.SIGKILL
    killed_state = load_state(store, victim)
    assert killed_state is not None
    assert killed_state.pending, "the shard was killed with work left"

    shard_processes.append(run_shard(config_path, victim, s3_environment(rig), tmp_path))
    survivors = [shard_processes[1 - victim], shard_processes[-1]]
    wait_for(lambda: all(p.poll() is not None for p in survivors), "the shards to finish", 90)
    assert [process.returncode for process in survivors] == [0, 0]
    resumed = read_shard_marker(store, victim)
    assert resumed.parts[: len(killed_state.parts)] == killed_state.parts
    publish_every_page_once(config_path, rig, store, web)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="datasets/web/v1/manifest.json")
    assert listed["KeyCount"] == 1


@pytest.mark.integration
def test_an_s3_outage_of_30_s_mid_crawl_loses_no_document(
    web: LocalWeb,
    rig: Rig,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    shard_processes: list[subprocess.Popen[bytes]],
) -> None:
    """The rig's S3 server is killed once a shard has committed a part, and started again 30 s
    later: the shards' commits wait for it (the store retries with backoff, and says so in the
    logs), no shard fails, and the published dataset holds every page once."""
    if not rig.local:
        pytest.skip("stops a process of the local rig; this cluster is not one")
    config_path, store = start_shards(web, rig, s3, bucket, tmp_path, shard_processes)
    script = REPO_ROOT / "hack" / "dev_cluster.py"
    subprocess.run([sys.executable, str(script), "kill", "seaweedfs"], check=True)
    try:
        time.sleep(30)  # the outage itself: nothing answers, nothing to wait for
    finally:
        subprocess.run([sys.executable, str(script), "restart", "seaweedfs"], check=True)
    wait_for(lambda: all(p.poll() is not None for p in shard_processes), "the shards", 240)
    assert [process.returncode for process in shard_processes] == [0] * SHARDS
    logs = "".join(log.read_text() for log in tmp_path.glob("shard-*.log"))
    assert "waiting for the S3 store at" in logs, "the wait is logged"
    assert "answered again after" in logs, "and its end"
    publish_every_page_once(config_path, rig, store, web)
