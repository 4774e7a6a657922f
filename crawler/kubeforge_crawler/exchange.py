"""URLs that one shard finds for another, and how the shards agree that the crawl is over.

A shard that finds a link to a host another shard owns writes it into that shard's inbox
(`exchange/TTTTT/SSSSS-UUID.json`) at its next commit, and lists the batch in its state (`sent`).
A shard with nothing left to fetch reads its inbox, and records what it took (`consumed`).

The crawl is over when every shard's committed state is idle and every batch any state lists as
sent is consumed by its target: then no shard has work and none is in transit. Because the
states are read one after another, not at once, a shard only stops after it has seen the same
over-condition twice in a row with no state changed in between (the four-counter method).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from kubeforge.dataset import EXCHANGE_PREFIX
from kubeforge.storage import ObjectStore
from kubeforge_crawler.checkpoint import CrawlState, SavedLink, load_state
from kubeforge_crawler.frontier import Link


def inbox_prefix(shard: int) -> str:
    return f"{EXCHANGE_PREFIX}{shard:05d}/"


def write_batch(store: ObjectStore, source: int, target: int, links: Sequence[Link]) -> str:
    """Writes links into a shard's inbox; returns the batch's key."""
    key = f"{inbox_prefix(target)}{source:05d}-{uuid.uuid4().hex}.json"
    payload = [SavedLink.of(link).model_dump(mode="json") for link in links]
    store.put(key, json.dumps(payload).encode("utf-8"))
    return key


def read_batch(store: ObjectStore, key: str) -> list[Link]:
    return [SavedLink.model_validate(item).link() for item in json.loads(store.get(key))]


def unread_batches(store: ObjectStore, shard: int, consumed: set[str]) -> list[str]:
    return [key for key in store.list(inbox_prefix(shard)) if key not in consumed]


def crawl_is_over(states: Sequence[CrawlState | None]) -> bool:
    """Whether these states show every shard idle with no batch in transit."""
    if any(state is None or not state.idle for state in states):
        return False
    consumed = {state.shard: set(state.consumed) for state in states if state is not None}
    for state in states:
        assert state is not None
        for key in state.sent:
            target = int(key.split("/")[1])
            if key not in consumed[target]:
                return False
    return True


class TerminationDetector:
    """Tells a shard when the whole crawl is over."""

    def __init__(self, store: ObjectStore, shards: int) -> None:
        self._store = store
        self._shards = shards
        self._previous: tuple[int, ...] | None = None

    def crawl_is_over(self) -> bool:
        """True on the second consecutive observation of the same finished states."""
        states = [load_state(self._store, shard) for shard in range(self._shards)]
        if not crawl_is_over(states):
            self._previous = None
            return False
        epochs = tuple(state.epoch for state in states if state is not None)
        over = epochs == self._previous
        self._previous = epochs
        return over
