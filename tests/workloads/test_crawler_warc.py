"""WARC and WET files (`sources.warc`) read from the rig's S3 into a deduplicated dataset, a
shard killed in the middle of a file that resumes where it committed, and the store of a source
named by its own endpoint, read signed or unsigned.

Real: the rig's S3 server (SeaweedFS) holding WARC and WET files written here from pydoc's pages
(`tests.warcfiles`), named by URI, by prefix and by a gzipped paths index as Common Crawl
publishes them, and crawler processes started with the commands the operator puts into its pods
(two shards, then the publish stage). The files hold planted exact and near copies of pages in
other files, and hostile records: a malformed header, bytes that are no gzip, an oversized
record, a 404, a PDF and a truncated last member. One shard is killed (SIGKILL) once it has
committed part of a long WET file, and started again.
"""

from __future__ import annotations

import collections
import functools
import gzip
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from botocore.exceptions import ClientError

from kubeforge.api.dataingest import DropReason
from kubeforge.crawlconfig import CrawlerConfig
from kubeforge.dataset import iter_documents, read_manifest, read_shard_marker, total_counters
from kubeforge.storage import MAX_ATTEMPTS_VARIABLE, S3Store, open_store, read_ranges
from kubeforge_crawler.checkpoint import load_state
from kubeforge_crawler.urls import shard_of
from kubeforge_crawler.warc import WarcDocument, read_warc_records
from tests import warcfiles
from tests.conftest import Rig
from tests.workloads.crawls import FILTERS, run_publish, run_shard, s3_environment
from tests.workloads.test_crawler_imports import near_copy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

SHARDS = 2
MAX_RECORD_BYTES = 512 * 1024
# Modules whose pydoc text is long and unlike the others': the long WET file's pages.
WET_MODULES = (
    "abc", "argparse", "array", "ast", "calendar", "cmd", "codecs", "collections", "colorsys",
    "configparser", "contextlib", "copy", "dataclasses", "datetime", "decimal", "difflib", "dis",
    "enum", "filecmp", "fnmatch", "fractions", "functools", "getopt", "gettext", "gzip",
    "hashlib", "hmac", "html", "imaplib", "inspect", "io", "ipaddress", "itertools", "keyword",
    "linecache", "locale", "logging", "lzma", "mailbox", "math", "mimetypes", "netrc",
    "numbers", "operator", "optparse", "pathlib", "pickle", "pkgutil", "plistlib", "poplib",
    "pprint", "queue", "quopri", "random", "re", "reprlib", "sched", "secrets", "selectors",
    "shelve", "shutil", "smtplib", "socket", "statistics", "string", "struct", "tarfile",
    "tempfile", "threading", "timeit", "tokenize", "traceback", "typing", "uuid",
    "warnings", "wave", "weakref", "zipfile", "zlib",
)  # fmt: skip


def page_url(name: str) -> str:
    return f"https://docs.example/{name}"


def test_warc_and_wet_files_become_deduplicated_documents_and_a_killed_shard_resumes(
    rig: Rig, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    html = {name: warcfiles.module_html(name).encode() for name in warcfiles.HTML_MODULES}
    files = {
        # Named by URI.
        "cc/one.warc.gz": warcfiles.warcinfo()
        + b"".join(warcfiles.response(page_url(name), html[name]) for name in ("json", "csv"))
        + warcfiles.malformed_header()
        + warcfiles.response(page_url("heapq"), html["heapq"])
        + warcfiles.response(page_url("gone"), b"<p>gone</p>", status=404),
        # Under the prefix.
        "cc/segment/two.warc.gz": warcfiles.warcinfo()
        + warcfiles.response(page_url("shlex"), html["shlex"])
        + warcfiles.response("https://mirror.example/json", html["json"])  # an exact copy
        + warcfiles.not_gzip()
        + warcfiles.response("https://docs.example/a.pdf", b"%PDF", media_type="application/pdf")
        + warcfiles.response(page_url("textwrap"), html["textwrap"]),
        "cc/segment/three.warc.gz": warcfiles.response(page_url("base64"), html["base64"])
        + warcfiles.response(page_url("big"), b"<p>" + b"big " * MAX_RECORD_BYTES + b"</p>")
        + warcfiles.response(page_url("bisect"), html["bisect"])
        + warcfiles.response(page_url("glob"), html["glob"])[:-40],  # truncated at the end
        "cc/segment/notes.txt": b"not a WARC file: the prefix skips it",
        # Named by the paths index: the long WET file, with a near copy of a page.
        "cc/wet/long.warc.wet.gz": warcfiles.warcinfo()
        + b"".join(
            warcfiles.conversion(page_url(name), warcfiles.module_text(name))
            for name in WET_MODULES
        )
        + warcfiles.conversion(
            "https://mirror.example/zlib", near_copy(warcfiles.module_text("zlib"))
        ),
        "cc/wet.paths.gz": gzip.compress(b"cc/wet/long.warc.wet.gz\n"),
    }
    for key, data in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    long_uri = f"s3://{bucket}/cc/wet/long.warc.wet.gz"
    config = CrawlerConfig.model_validate(
        {
            "datasetUri": f"s3://{bucket}/datasets/warc/v1",
            "shards": SHARDS,
            "sources": {
                "warc": {
                    "files": [f"s3://{bucket}/cc/one.warc.gz"],
                    "prefixes": [f"s3://{bucket}/cc/segment"],
                    "pathIndexes": [f"s3://{bucket}/cc/wet.paths.gz"],
                }
            },
            "crawl": {
                "userAgent": {"product": "KubeforgeTest", "contact": "tests@kubeforge.dev"},
                "maxResponseBytes": MAX_RECORD_BYTES,
            },
            "processing": {"filters": FILTERS},
            "output": {"partMaxDocuments": 1, "commitIntervalSeconds": 0.05},
            "pollSeconds": 0.1,
        }
    )
    config_path = tmp_path / "crawler.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True)))
    environment = s3_environment(rig)
    dataset = S3Store(bucket, "datasets/warc/v1", s3)

    def start(shard: int) -> subprocess.Popen[bytes]:
        return run_shard(config_path, shard, environment, tmp_path)

    # The shard that owns the long file is killed once it has committed part of it.
    victim = shard_of(long_uri, SHARDS)
    shards = {shard: start(shard) for shard in range(SHARDS)}
    resumed_at = None
    while resumed_at is None:
        state = load_state(dataset, victim)
        if state is not None and state.importing is not None and state.importing.uri == long_uri:
            resumed_at = state.importing.offset
        assert shards[victim].poll() is None, "the shard ended before it was killed"
        time.sleep(0.02)
    shards[victim].kill()
    shards[victim].wait(timeout=30)
    killed = load_state(dataset, victim)
    assert killed is not None
    assert killed.importing is not None, "killed in the middle of the long file"
    assert killed.importing.uri == long_uri
    assert long_uri not in killed.imported
    shards[victim] = start(victim)
    for shard, process in shards.items():
        process.wait(timeout=180)
        assert process.returncode == 0, (tmp_path / f"shard-{shard}.log").read_text()
    run_publish(config_path, environment)

    manifest = read_manifest(dataset)
    documents = list(iter_documents(dataset, manifest))
    urls = collections.Counter(document.url for document in documents)
    # Each page once; of the exact copy of json and the near copy of zlib, one of each pair.
    expected = {
        *(page_url(name) for name in ("csv", "heapq", "shlex", "textwrap", "base64", "bisect")),
        *(page_url(name) for name in WET_MODULES if name != "zlib"),
    }
    assert (
        set(urls)
        - {page_url("json"), "https://mirror.example/json"}
        - {
            page_url("zlib"),
            "https://mirror.example/zlib",
        }
        == expected
    )
    assert max(urls.values()) == 1, "no document twice"
    assert len(documents) == len(expected) + 2
    assert 0 < resumed_at <= killed.importing.offset < len(files["cc/wet/long.warc.wet.gz"])

    # Each document's provenance names the record it came from, which is there to be read again.
    kept = {document.id for document in documents}
    provenance = [
        item
        for shard in range(SHARDS)
        for part in read_shard_marker(dataset, shard).parts
        for item in part.provenance
        if item.id in kept
    ]
    assert sorted(item.url for item in provenance) == sorted(urls)
    for item in provenance:
        assert item.warc is not None
        key = item.warc.file.removeprefix(f"s3://{bucket}/")
        open_at = functools.partial(read_ranges, S3Store(bucket, "", s3), key)
        reread = next(read_warc_records(open_at, MAX_RECORD_BYTES, item.warc.offset)).outcome
        assert isinstance(reread, WarcDocument)
        assert (reread.url, reread.record_id) == (item.url, item.warc.record_id)

    counters = total_counters(manifest)
    dropped = collections.Counter(counters.dropped_by_reason)
    assert dropped[DropReason.MALFORMED_RECORD] == 2
    assert dropped[DropReason.TRUNCATED_RECORD] == 1
    assert dropped[DropReason.TOO_LARGE] == 1
    assert dropped[DropReason.HTTP_ERROR] == 1
    assert dropped[DropReason.UNSUPPORTED_CONTENT_TYPE] == 1
    assert counters.duplicates_removed == 2, "the copy of json and the near copy of zlib"


def test_a_warc_store_names_its_endpoint_and_may_be_read_unsigned(
    rig: Rig, s3: S3Client, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.put_object(Bucket=bucket, Key="cc/a.warc.gz", Body=warcfiles.warcinfo())
    # The pods' own endpoint is elsewhere: the source's endpoint is the one used.
    for variable, value in s3_environment(rig, AWS_ENDPOINT_URL="http://127.0.0.1:9").items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv(MAX_ATTEMPTS_VARIABLE, "1")
    signed = open_store(f"s3://{bucket}/cc", endpoint=rig.s3_endpoint)
    assert signed.get("a.warc.gz") == warcfiles.warcinfo()
    # Unsigned, the request carries no credentials: this store is not public, so it refuses it.
    unsigned = open_store(f"s3://{bucket}/cc", endpoint=rig.s3_endpoint, anonymous=True)
    with pytest.raises(ClientError) as refused:
        unsigned.get("a.warc.gz")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
