"""One crawler shard: visits the hosts it owns, commits documents and state, and stops when the
whole crawl is over.

The shard owns the hosts `urls.shard_of` gives it. It starts from the seeds and sitemaps on its
hosts (or resumes from its last committed state), and runs workers per origin: each takes the
origin's next URL, asks robots.txt, waits for its politeness turn, fetches, follows redirects on
the same origin (a redirect elsewhere is a new URL for whichever shard owns it), extracts the
text and links, and passes the text through the document pipeline into the part being filled.

Before fetching, it imports the objects under `sources.objectPrefixes` that it owns (`imports`),
then the records of the WARC and WET files of `sources.warc` that it owns (`warc_files`, `warc`),
through the same document pipeline. A file is owned, as an object is, by a stable hash of its
URI; a commit in the middle of a file records the offset after its last record read, where a
restarted shard goes on.

Every `output.commitIntervalSeconds`, or when the part is full, it commits (`checkpoint`). With
nothing left to fetch it commits as idle, takes URLs other shards found for it (`exchange`), and
once every shard is idle with nothing in transit it writes its completion marker. A rerun of a
completed shard returns its marker at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import defaultdict
from datetime import UTC, datetime

from kubeforge.api.dataingest import DropReason
from kubeforge.crawlconfig import CrawlerConfig
from kubeforge.dataset import (
    Document,
    PartInfo,
    ShardMarker,
    WarcOrigin,
    document_id,
    read_shard_marker,
    write_part,
    write_shard_marker,
)
from kubeforge.progress import FileSink
from kubeforge.storage import ObjectNotFound, ObjectStore, read_ranges
from kubeforge_crawler.checkpoint import (
    CrawlState,
    ImportPosition,
    SavedLink,
    load_state,
    save_state,
    signatures_key,
)
from kubeforge_crawler.counters import ShardCounters
from kubeforge_crawler.exchange import TerminationDetector, read_batch, unread_batches, write_batch
from kubeforge_crawler.extract import (
    EXTRACTOR,
    Extracted,
    decode_html,
    extract_html,
    extract_plain,
)
from kubeforge_crawler.fetch import Downloader, Refused, Response
from kubeforge_crawler.frontier import Frontier, Link, LinkKind
from kubeforge_crawler.imports import UnsupportedObject, list_objects, read_records
from kubeforge_crawler.minhash import decode_signatures, encode_signatures
from kubeforge_crawler.pipeline import Candidate, DocumentPipeline
from kubeforge_crawler.politeness import HostTurns, host_delay
from kubeforge_crawler.robots import RobotsCache, Verdict
from kubeforge_crawler.sitemaps import parse_sitemap
from kubeforge_crawler.urls import Scope, host_of, normalize, origin_of, scheme_of, shard_of
from kubeforge_crawler.warc import RefusedRecord, WarcDocument, read_warc_records
from kubeforge_crawler.warc_files import WarcFile, WarcFiles

log = logging.getLogger(__name__)

_WAKE_SECONDS = 0.25
"""How often the worker supervisor checks whether a commit is due."""
HTTP_OK = 200
"""The status recorded in the provenance of an imported document (it was read successfully)."""


def crawl_scope(config: CrawlerConfig) -> Scope:
    """The scope of a crawl: its allowed domains, else the hosts of its seeds and sitemaps."""
    sources = config.sources
    domains = sources.allowed_domains or sorted(
        {host_of(url) for url in [*sources.seeds, *sources.sitemaps] if normalize(url)}
    )
    return Scope(domains, sources.include_patterns, sources.exclude_patterns)


class ShardCrawler:
    """The crawl of one shard."""

    def __init__(
        self,
        config: CrawlerConfig,
        shard: int,
        store: ObjectStore,
        progress: FileSink | None = None,
    ) -> None:
        """progress: where the shard's counters go at every commit (the local runner's file)."""
        if not 0 <= shard < config.shards:
            raise ValueError(f"shard {shard} is not one of the {config.shards} shards")
        self.config = config
        self.shard = shard
        self.store = store
        self.progress = progress
        self.policy = config.crawl
        self.product = config.crawl.user_agent.product
        self.scope = crawl_scope(config)
        self.budget = math.ceil(config.sources.max_pages / config.shards)
        self.downloader = Downloader(config.crawl, config.ca_file)
        self.robots = RobotsCache(self.downloader, config.crawl)
        self.frontier = Frontier()
        self.pipeline = DocumentPipeline(config.processing)
        self.counters = ShardCounters()
        self.buffer: list[Candidate] = []
        self.buffer_bytes = 0
        self.parts: list[PartInfo] = []
        self.sent: list[str] = []
        self.consumed: set[str] = set()
        self.imported: set[str] = set()
        self.importing: ImportPosition | None = None
        self.outbox: defaultdict[int, list[Link]] = defaultdict(list)
        self.epoch = 0
        self.pages_fetched = 0
        self.turns: dict[str, HostTurns] = {}
        self.robots_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.dirty = True
        self.committed_idle = False
        self.last_commit = time.monotonic()
        self.commit_lock = asyncio.Lock()

    async def run(self) -> ShardMarker:
        """Crawls until the whole crawl is over; returns the shard's completion marker."""
        try:
            return await asyncio.to_thread(read_shard_marker, self.store, self.shard)
        except ObjectNotFound:
            pass
        state = await asyncio.to_thread(load_state, self.store, self.shard)
        if state is None:
            self._seed()
        else:
            await asyncio.to_thread(self._restore, state)
        detector = TerminationDetector(self.store, self.config.shards)
        async with self.downloader:
            await self._import_objects()
            await self._import_warc()
            while True:
                await self._drain()
                if self.dirty or not self.committed_idle:
                    await self._commit(idle=True)
                if await self._receive():
                    continue
                if await asyncio.to_thread(detector.crawl_is_over):
                    break
                await asyncio.sleep(self.config.poll_seconds)
        marker = ShardMarker(
            shard=self.shard,
            parts=tuple(self.parts),
            counters=self.counters.snapshot(),
            user_agent=self.policy.user_agent.header,
            extractor=EXTRACTOR,
            completed_at=datetime.now(UTC),
        )
        await asyncio.to_thread(write_shard_marker, self.store, marker)
        if self.progress is not None:
            await asyncio.to_thread(self.progress.write, marker.counters)
        log.info("shard %d complete: %s", self.shard, marker.counters.model_dump_json())
        return marker

    # Starting and resuming.

    def _seed(self) -> None:
        for url in self.config.sources.seeds:
            self._discover(url, 0, LinkKind.PAGE, forward=False)
        for url in self.config.sources.sitemaps:
            self._discover(url, 0, LinkKind.SITEMAP, forward=False)

    def _restore(self, state: CrawlState) -> None:
        self.epoch = state.epoch
        self.parts = list(state.parts)
        self.sent = list(state.sent)
        self.consumed = set(state.consumed)
        self.imported = set(state.imported)
        self.importing = state.importing
        self.counters = ShardCounters(state.counters)
        self.pages_fetched = state.pages_fetched
        self.frontier.seen = set(state.seen)
        for saved in state.pending:
            self.frontier.push(saved.link())
        for part in self.parts:
            signatures = decode_signatures(self.store.get(signatures_key(part.key)))
            for provenance, signature in zip(part.provenance, signatures, strict=True):
                self.pipeline.remember(provenance.content_hash, signature)
        self.committed_idle = state.idle
        self.dirty = False
        log.info(
            "shard %d resumes at epoch %d: %d parts, %d pending URLs",
            self.shard,
            state.epoch,
            len(state.parts),
            len(state.pending),
        )

    # Deciding about URLs.

    def _discover(self, url: str, depth: int, kind: LinkKind, *, forward: bool = True) -> None:
        """Queues a URL for this shard, hands it to the shard that owns it, or drops it."""
        normalized = normalize(url)
        if normalized is None:
            return
        if kind is LinkKind.PAGE and depth > self.config.sources.max_depth:
            return
        if not self.frontier.mark_seen(normalized):
            return
        self.dirty = True
        try:
            self.downloader.check_target(normalized)
        except Refused as refused:
            self.counters.drop(refused.reason)
            return
        if not self.scope.allows(normalized):
            self.counters.drop(DropReason.OFF_SCOPE)
            return
        owner = shard_of(host_of(normalized), self.config.shards)
        if owner == self.shard:
            self.frontier.push(Link(normalized, depth, kind))
        elif forward:
            self.outbox[owner].append(Link(normalized, depth, kind))

    async def _receive(self) -> bool:
        """Takes the URLs other shards found for this one; False when there were none."""
        keys = await asyncio.to_thread(unread_batches, self.store, self.shard, self.consumed)
        for key in keys:
            for link in await asyncio.to_thread(read_batch, self.store, key):
                if self.frontier.mark_seen(link.url):
                    self.frontier.push(link)
            self.consumed.add(key)
            self.dirty = True
        return bool(keys)

    # Importing.

    async def _import_objects(self) -> None:
        """Imports the objects this shard owns that it has not committed yet, one at a time."""
        for prefix in self.config.sources.object_prefixes:
            store, keys = await asyncio.to_thread(list_objects, prefix)
            for key in keys:
                uri = f"{store.uri}/{key}"
                if uri in self.imported or shard_of(uri, self.config.shards) != self.shard:
                    continue
                data = await asyncio.to_thread(store.get, key)
                try:
                    records = read_records(uri, data)
                except UnsupportedObject as error:
                    log.info("not imported: %s", error)
                    self.counters.drop(DropReason.UNSUPPORTED_CONTENT_TYPE)
                    records = []
                imported_at = datetime.now(UTC)
                for record in records:
                    extracted = Extracted(title=record.title, text=record.text, links=())
                    self._consider(record.url, imported_at, HTTP_OK, extracted)
                self.imported.add(uri)
                self.dirty = True
                if self._commit_due():
                    await self._commit(idle=False)

    async def _import_warc(self) -> None:
        """Reads the WARC files this shard owns that it has not committed whole yet, the one it
        was in from where its last commit left it."""
        if not self.config.sources.warc.given:
            return
        files = await asyncio.to_thread(WarcFiles(self.config.sources.warc).named)
        for file in files:
            if file.uri in self.imported or shard_of(file.uri, self.config.shards) != self.shard:
                continue
            await self._import_warc_file(file)

    async def _import_warc_file(self, file: WarcFile) -> None:
        resumed = self.importing
        start = resumed.offset if resumed is not None and resumed.uri == file.uri else 0
        log.info("shard %d reads %s from byte %d", self.shard, file.uri, start)
        records = read_warc_records(
            functools.partial(read_ranges, file.store, file.key),
            self.policy.max_response_bytes,
            start,
        )
        # Each record is read and parsed on a thread: the ranged reads block.
        while (read := await asyncio.to_thread(next, records, None)) is not None:
            self._consider_record(file.uri, read.outcome)
            self.importing = ImportPosition(uri=file.uri, offset=read.next_offset)
            self.dirty = True
            if self._commit_due():
                await self._commit(idle=False)
        self.imported.add(file.uri)
        self.importing = None
        self.dirty = True

    def _consider_record(self, uri: str, record: WarcDocument | RefusedRecord) -> None:
        if isinstance(record, RefusedRecord):
            log.info("%s at byte %d: %s (%s)", uri, record.offset, record.reason, record.detail)
            self.counters.drop(record.reason)
            return
        if record.html:
            extracted = extract_html(decode_html(record.body, record.charset))  # links unfollowed
        else:
            extracted = extract_plain(record.body.decode("utf-8", errors="replace"))
        origin = WarcOrigin(file=uri, record_id=record.record_id, offset=record.offset)
        self._consider(record.url, record.date, HTTP_OK, extracted, origin)

    # Fetching.

    async def _drain(self) -> None:
        """Runs workers until the frontier is empty, committing when a commit is due."""
        workers: dict[tuple[str, int], asyncio.Task[None]] = {}
        try:
            while True:
                for origin in self.frontier.origins_with_work():
                    for slot in range(self.policy.per_host_concurrency):
                        if (origin, slot) not in workers:
                            workers[origin, slot] = asyncio.create_task(self._work(origin))
                if not workers:
                    return
                await asyncio.wait(
                    workers.values(), timeout=_WAKE_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                for key, task in list(workers.items()):
                    if task.done():
                        del workers[key]
                        task.result()
                if self._commit_due():
                    await self._commit(idle=False)
        finally:
            for task in workers.values():
                task.cancel()

    def _turns(self, origin: str) -> HostTurns:
        if origin not in self.turns:
            self.turns[origin] = HostTurns(
                self.policy.per_host_concurrency, self.policy.min_delay_seconds
            )
        return self.turns[origin]

    async def _work(self, origin: str) -> None:
        turns = self._turns(origin)
        while (link := self.frontier.take(origin)) is not None:
            if self.pages_fetched >= self.budget:
                self.counters.drop(DropReason.MAX_PAGES)
            elif await self._robots_allow(origin, turns, link):
                await self._visit(origin, turns, link)
            self.frontier.done(link)
            self.dirty = True

    async def _robots_allow(self, origin: str, turns: HostTurns, link: Link) -> bool:
        """Whether robots.txt lets the link be fetched; waits while robots.txt is unavailable."""
        if not self.policy.obey_robots_txt:
            return True
        while True:
            async with self.robots_locks[origin]:
                if not self.robots.is_fresh(origin):
                    entry = await self.robots.refresh(origin, turns)
                    turns.delay = host_delay(
                        self.policy.min_delay_seconds,
                        entry.crawl_delay(self.product),
                        self.policy.max_crawl_delay_seconds,
                    )
                    for sitemap in entry.sitemaps:
                        self._discover(sitemap, 0, LinkKind.SITEMAP)
                entry = self.robots.entry(origin)
            verdict = entry.verdict(link.url, self.product)
            if verdict is Verdict.ALLOWED:
                return True
            if verdict is Verdict.DISALLOWED:
                self.counters.drop(DropReason.ROBOTS_DISALLOWED)
                return False
            if entry.refused is not None or entry.failures > self.policy.retries:
                reason = entry.refused or DropReason.ROBOTS_UNAVAILABLE
                dropped = [link, *self.frontier.drain(origin)]
                self.counters.drop(reason, len(dropped))
                log.warning("%s: %s, %d URLs dropped", origin, reason, len(dropped))
                return False
            await asyncio.sleep(max(0.0, entry.expires - asyncio.get_running_loop().time()))

    async def _visit(self, origin: str, turns: HostTurns, link: Link) -> None:
        url = link.url
        visited = {url}
        media_types = None if link.kind is LinkKind.SITEMAP else self.policy.allowed_content_types
        for hop in range(self.policy.max_redirects + 1):
            try:
                async with turns.turn():
                    response = await self.downloader.get(url, media_types=media_types)
            except Refused as refused:
                log.info("dropped %s", refused)
                self.counters.drop(refused.reason)
                return
            self.pages_fetched += 1
            self.counters.response(response.status, response.wire_bytes)
            target = response.location
            if target is None:
                break
            next_url = normalize(target, base=url)
            if next_url is None:
                self.counters.drop(DropReason.UNSUPPORTED_SCHEME)
                return
            if next_url in visited:
                self.counters.drop(DropReason.REDIRECT_LOOP)
                return
            if self._downgrades(url, next_url):
                log.info("dropped %s: redirect to %s leaves https", url, next_url)
                self.counters.drop(DropReason.INSECURE_REDIRECT)
                return
            if origin_of(next_url) != origin:
                self._discover(next_url, link.depth, link.kind)
                return
            if hop == self.policy.max_redirects:
                self.counters.drop(DropReason.TOO_MANY_REDIRECTS)
                return
            if not await self._robots_allow(origin, turns, Link(next_url, link.depth, link.kind)):
                return
            if not self.frontier.mark_seen(next_url):
                return
            visited.add(next_url)
            url = next_url
        if response.status >= 400:
            self.counters.drop(DropReason.HTTP_ERROR)
        elif link.kind is LinkKind.SITEMAP:
            self._read_sitemap(response)
        else:
            self._read_page(response, link)

    def _downgrades(self, url: str, target: str) -> bool:
        """A redirect from https to http, which the policy refuses unless it allows them."""
        return (
            scheme_of(url) == "https"
            and scheme_of(target) == "http"
            and not self.policy.tls.allow_https_to_http_redirects
        )

    def _read_sitemap(self, response: Response) -> None:
        try:
            sitemap = parse_sitemap(response.body, self.policy.max_response_bytes)
        except ValueError as error:
            log.info("%s: %s", response.url, error)
            self.counters.drop(DropReason.UNSUPPORTED_CONTENT_TYPE)
            return
        for page in sitemap.pages:
            self._discover(page, 0, LinkKind.PAGE)
        for nested in sitemap.sitemaps:
            self._discover(nested, 0, LinkKind.SITEMAP)

    def _read_page(self, response: Response, link: Link) -> None:
        text = decode_html(response.body, response.charset)
        if response.media_type == "text/plain":
            extracted = extract_plain(text)
        else:
            extracted = extract_html(text)
        for href in dict.fromkeys(extracted.links):
            if href.startswith("#"):
                continue  # the page itself, already seen
            target = normalize(href, base=response.url)
            if target is not None:
                self._discover(target, link.depth + 1, LinkKind.PAGE)
        self._consider(response.url, response.fetched_at, response.status, extracted)

    def _consider(
        self,
        url: str,
        fetched_at: datetime,
        status: int,
        extracted: Extracted,
        warc: WarcOrigin | None = None,
    ) -> None:
        """Passes a document through the pipeline into the part being filled, or counts why not."""
        result = self.pipeline.process(url, fetched_at, status, extracted, warc)
        if isinstance(result, str):
            self.counters.drop(result)
            return
        self.buffer.append(result)
        self.buffer_bytes += len(result.text.encode("utf-8"))
        self.counters.kept()

    # Committing.

    def _commit_due(self) -> bool:
        output = self.config.output
        if len(self.buffer) >= output.part_max_documents:
            return True
        if self.buffer_bytes >= output.part_max_bytes:
            return True
        elapsed = time.monotonic() - self.last_commit
        return self.dirty and elapsed >= output.commit_interval_seconds

    async def _commit(self, *, idle: bool) -> None:
        """Writes the filled part, the outgoing URLs and the state, in that order."""
        async with self.commit_lock:
            # The snapshot is taken without yielding to the event loop, so it is consistent.
            candidates, self.buffer, self.buffer_bytes = self.buffer, [], 0
            outbox, self.outbox = self.outbox, defaultdict(list)
            pending = tuple(SavedLink.of(link) for link in self.frontier.pending())
            seen = tuple(sorted(self.frontier.seen))
            counters = self.counters.snapshot()
            pages_fetched = self.pages_fetched
            consumed = tuple(sorted(self.consumed))
            imported = tuple(sorted(self.imported))
            importing = self.importing
            self.dirty = False
            self.last_commit = time.monotonic()
            parts = list(self.parts)
            if candidates:
                parts.append(await asyncio.to_thread(self._write_part, len(parts), candidates))
            sent = [
                await asyncio.to_thread(write_batch, self.store, self.shard, target, links)
                for target, links in sorted(outbox.items())
            ]
            state = CrawlState(
                shard=self.shard,
                epoch=self.epoch + 1,
                idle=idle,
                pending=pending,
                seen=seen,
                parts=tuple(parts),
                counters=counters,
                pages_fetched=pages_fetched,
                sent=(*self.sent, *sent),
                consumed=consumed,
                imported=imported,
                importing=importing,
            )
            await asyncio.to_thread(save_state, self.store, state)
            if self.progress is not None:
                await asyncio.to_thread(self.progress.write, counters)
            self.parts, self.sent, self.epoch = parts, list(state.sent), state.epoch
            self.committed_idle = idle
            log.info(
                "shard %d committed epoch %d: %d parts, %d pages fetched, %d pending%s",
                self.shard,
                state.epoch,
                len(parts),
                pages_fetched,
                len(pending),
                " (idle)" if idle else "",
            )

    def _write_part(self, index: int, candidates: list[Candidate]) -> PartInfo:
        documents = [
            Document(
                id=document_id(self.shard, index, row),
                url=candidate.url,
                fetched_at=candidate.fetched_at,
                content_hash=candidate.content_hash,
                language=candidate.language,
                title=candidate.title,
                text=candidate.text,
            )
            for row, candidate in enumerate(candidates)
        ]
        statuses = [candidate.http_status for candidate in candidates]
        part = write_part(
            self.store,
            self.shard,
            index,
            documents,
            statuses,
            self.config.output.format,
            warc_origins=[candidate.warc for candidate in candidates],
        )
        signatures = [candidate.signature for candidate in candidates]
        self.store.put(
            signatures_key(part.key),
            encode_signatures(signatures, self.config.processing.dedup.permutations),
        )
        return part
