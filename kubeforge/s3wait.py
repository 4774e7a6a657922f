"""An S3 client says when it starts waiting for its store, and when the store answers again.

botocore retries a request whose connection failed, or that a busy store answered with a 5xx
status or a throttle, with exponential backoff, silently: during an outage of the store a
crawler, trainer or operator logs nothing until the store answers or its attempts
(KUBEFORGE_S3_MAX_ATTEMPTS) run out, minutes later. `report_waits` hooks botocore's
`needs-retry` event, emitted after every attempt, to log one WARNING when an attempt fails in a
way that is retried (naming the endpoint and the error, never the credentials) and one INFO with
the time waited when an attempt succeeds again. The state is per client, so concurrent requests
of one client (checkpoint uploads on threads) log each outage once. A process that reports its
state (the trainer's rank 0, in `status.progress.storageWaitingSince`) `subscribe`s to the start
and end of every wait.

Imported only where boto3 is installed: by the components that talk to S3.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

RETRY_EVENT = "needs-retry.s3"
HANDLER_ID = "kubeforge-report-storage-waits"
# The statuses and error codes botocore's standard retry mode tries again (besides connection
# errors): a store that is up but cannot answer yet.
RETRIED_STATUSES = frozenset({500, 502, 503, 504})
RETRIED_CODES = frozenset(
    {"Throttling", "ThrottlingException", "SlowDown", "RequestTimeout", "ServiceUnavailable"}
)

log = logging.getLogger(__name__)

WaitListener = Callable[[datetime | None], None]
"""Called with the time a wait for the store began, and with None when the store answers again."""
_listeners: list[WaitListener] = []


def subscribe(listener: WaitListener) -> None:
    """Calls `listener` whenever a client of this process starts or stops waiting for its store
    (on the thread that made the request)."""
    _listeners.append(listener)


def unsubscribe(listener: WaitListener) -> None:
    """Stops calling `listener` (a trainer that closes, so that a later one in the same process
    is the only one told)."""
    if listener in _listeners:
        _listeners.remove(listener)


def _tell(since: datetime | None) -> None:
    for listener in list(_listeners):
        listener(since)


def _failure(response: Any, caught_exception: BaseException | None) -> str | None:
    """What went wrong with one attempt, when it is what the store's retries wait out."""
    if caught_exception is not None:
        return f"{type(caught_exception).__name__}: {caught_exception}"
    if response is None:
        return None
    http, parsed = response
    code = (parsed or {}).get("Error", {}).get("Code")
    if http.status_code in RETRIED_STATUSES or code in RETRIED_CODES:
        return f"HTTP {http.status_code}" + (f" {code}" if code else "")
    return None


class StorageWaits:
    """One client's outages: when the first failed attempt of the current one happened."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.waiting_since: float | None = None
        self._lock = threading.Lock()

    def __call__(
        self,
        response: Any = None,
        caught_exception: BaseException | None = None,
        attempts: int = 1,
        **_: Any,
    ) -> None:
        failure = _failure(response, caught_exception)
        with self._lock:
            if failure is not None and self.waiting_since is None:
                self.waiting_since = time.monotonic()
                log.warning(
                    "waiting for the S3 store at %s: %s (attempt %d); retrying with backoff",
                    self.endpoint,
                    failure,
                    attempts,
                )
                _tell(datetime.now(UTC))
            elif failure is None and self.waiting_since is not None:
                waited = time.monotonic() - self.waiting_since
                self.waiting_since = None
                log.info("the S3 store at %s answered again after %.1f s", self.endpoint, waited)
                _tell(None)


def report_waits(client: S3Client) -> S3Client:
    """The client, logging when its requests start and stop waiting for the store."""
    url = urlsplit(client.meta.endpoint_url)
    waits = StorageWaits(f"{url.scheme}://{url.netloc}")
    client.meta.events.register(RETRY_EVENT, waits, unique_id=HANDLER_ID)
    return client
