"""A work queue of object keys, as client-go's: coalescing, one worker per key, retry with backoff.

Every trigger (an event of a TrainingJob or of one of its children, a periodic resync, a wake-up
the last reconcile asked for) adds the job's key; a key already waiting is not added twice, and a
key added while being processed is processed once more afterwards. So a burst of pod events makes
one reconcile, and two reconciles of one job never run at the same time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
logger = logging.getLogger(__name__)


class Stale(Exception):
    """The reconcile acted on a copy of an object older than the server's (a 409 Conflict): the
    key is processed again after the usual backoff, logged without a traceback."""


class WorkQueue(Generic[Key]):
    """Runs `process(key)` for added keys; it returns seconds until the key wants another look."""

    def __init__(
        self,
        process: Callable[[Key], Awaitable[float | None]],
        *,
        workers: int = 8,
        max_backoff: float = 60.0,
    ) -> None:
        self._process = process
        self._workers = workers
        self._max_backoff = max_backoff
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._waiting: set[Key] = set()
        self._active: set[Key] = set()
        self._dirty: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._later: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    def __len__(self) -> int:
        return len(self._waiting)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def stop(self, grace: float = 10.0) -> None:
        """Takes no more keys, lets running reconciles finish (cancelling one mid-request could
        leave its connection open), then stops the idle workers."""
        self._closing = True
        for handle in self._later.values():
            handle.cancel()
        deadline = asyncio.get_running_loop().time() + grace
        while self._active and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def add(self, key: Key) -> None:
        if self._closing or key in self._waiting:
            return
        if key in self._active:
            self._dirty.add(key)
            return
        self._waiting.add(key)
        self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Adds the key after `delay` seconds; an earlier pending wake-up for it wins."""
        if self._closing:
            return
        loop = asyncio.get_running_loop()
        pending = self._later.get(key)
        if pending is not None and pending.when() <= loop.time() + delay:
            return
        if pending is not None:
            pending.cancel()
        self._later[key] = loop.call_later(delay, self._wake, key)

    def _wake(self, key: Key) -> None:
        self._later.pop(key, None)
        self.add(key)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._waiting.discard(key)
            self._active.add(key)
            try:
                requeue_after = await self._process(key)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(0.5 * 2 ** (failures - 1), self._max_backoff)
                if isinstance(error, Stale):
                    logger.info("reconcile of %s read a stale copy: %s; again in %.1f s",
                                key, error, delay)  # fmt: skip
                else:
                    logger.exception(
                        "reconcile of %s failed (try %d); again in %.1f s", key, failures, delay
                    )
                self.add_after(key, delay)
            else:
                self._failures.pop(key, None)
                if requeue_after is not None:
                    self.add_after(key, requeue_after)
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
