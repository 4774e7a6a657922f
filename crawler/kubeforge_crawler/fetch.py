"""One HTTP exchange under the crawl policy: the SSRF guard, time and size limits, retries.

`Downloader.get` makes one GET without following redirects (the caller decides where a redirect
may lead: same host, another shard, nowhere) and retries timeouts, network errors, 429 and 5xx
with exponential backoff and the server's Retry-After. It returns a `Response` or raises `Refused`
with the reason the URL is dropped. Limits: connect time, time to the response headers, total
time (a slow drip is cut off), the body's size before and after decompression, only http and
https, and no connection to an address `AddressPolicy` refuses. TLS certificates and host names
are verified against the system's CAs and an optional extra bundle; a certificate that does not
verify is dropped at once (retrying cannot fix it) with a reason that says why.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import aiohttp

from kubeforge.api.dataingest import CrawlPolicy, DropReason
from kubeforge_crawler.addresses import (
    AddressPolicy,
    BlockedAddress,
    GuardedResolver,
    literal_address,
)
from kubeforge_crawler.decoding import (
    ACCEPT_ENCODING,
    CORRUPT_BODY_ERRORS,
    BodyFull,
    BodyTooLarge,
    BoundedBody,
    UnsupportedEncoding,
    decoder_for,
)
from kubeforge_crawler.urls import SCHEMES, host_of, scheme_of

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# OpenSSL's verify results (X509_V_ERR_*) that have a reason of their own; any other failed
# verification (unknown issuer, self-signed, bad signature, revoked) is TlsUntrusted.
TLS_VERIFY_REASONS = {
    9: DropReason.TLS_EXPIRED,  # not yet valid
    10: DropReason.TLS_EXPIRED,  # expired
    62: DropReason.TLS_HOST_MISMATCH,  # host name
    64: DropReason.TLS_HOST_MISMATCH,  # IP address
}

HOST_REFUSALS = frozenset(
    {
        DropReason.BLOCKED_ADDRESS,
        DropReason.TLS_UNTRUSTED,
        DropReason.TLS_EXPIRED,
        DropReason.TLS_HOST_MISMATCH,
    }
)
"""Refusals that hold for every URL of the origin: its address, or its certificate."""


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verifies certificates and host names against the system's CAs and those in `ca_file`.

    Raises ValueError when `ca_file` cannot be read or holds no PEM certificate.
    """
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except OSError as error:  # ssl.SSLError too: no certificate in the file
            raise ValueError(f"caFile {ca_file}: {error}") from None
    return context


class Refused(Exception):
    """The URL is dropped, for `reason`."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Response:
    """A response with its decoded body (empty for redirects and refused media types)."""

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    wire_bytes: int
    fetched_at: datetime

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    @property
    def charset(self) -> str | None:
        for parameter in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                return value.strip().strip('"').lower()
        return None

    @property
    def location(self) -> str | None:
        """Where a redirect points (unresolved), or None."""
        return self.headers.get("location") if self.status in REDIRECT_STATUSES else None


class _Retryable(Exception):
    def __init__(self, reason: DropReason, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks to wait (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class Downloader:
    """HTTP GETs with the crawl policy's limits, over one connection pool."""

    def __init__(self, policy: CrawlPolicy, ca_file: str | None = None) -> None:
        self.policy = policy
        self.addresses = AddressPolicy(policy.allowed_networks)
        self.tls = tls_context(ca_file)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.addresses), limit=256, ttl_dns_cache=300, ssl=self.tls
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            trust_env=False,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.policy.connect_timeout_seconds
            ),
            headers={
                "User-Agent": self.policy.user_agent.header,
                "Accept-Encoding": ACCEPT_ENCODING,
            },
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(
        self,
        url: str,
        *,
        media_types: Collection[str] | None = None,
        max_bytes: int | None = None,
        truncate: bool = False,
    ) -> Response:
        """GETs a URL, retrying what is worth retrying; raises Refused when it is dropped.

        A 429 or 5xx that persists through the retries is returned, for the caller to count.
        `media_types` (when given) are the types whose body is read; `truncate` keeps the first
        `max_bytes` of a larger body instead of refusing it.
        """
        limit = self.policy.max_response_bytes if max_bytes is None else max_bytes
        attempts = self.policy.retries + 1
        for attempt in range(attempts):
            try:
                response = await self._exchange(url, media_types, limit, truncate)
            except _Retryable as failure:
                if attempt + 1 == attempts:
                    raise Refused(failure.reason, failure.detail) from None
                await asyncio.sleep(self._backoff(attempt, failure.retry_after))
                continue
            if response.status in RETRYABLE_STATUSES and attempt + 1 < attempts:
                wait = retry_after_seconds(response.headers.get("retry-after"))
                await asyncio.sleep(self._backoff(attempt, wait))
                continue
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        backoff: float = self.policy.backoff_seconds * 2.0**attempt
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.policy.max_retry_after_seconds))
        return backoff

    def check_target(self, url: str) -> None:
        """Refuses a URL whose scheme is not http(s) or whose host is a refused IP literal."""
        if scheme_of(url) not in SCHEMES:
            raise Refused(DropReason.UNSUPPORTED_SCHEME, f"{url}: only http and https")
        address = literal_address(host_of(url))
        if address is not None:
            why = self.addresses.refusal(address)
            if why is not None:
                raise Refused(DropReason.BLOCKED_ADDRESS, f"{url}: {address} is {why}")

    async def _exchange(
        self, url: str, media_types: Collection[str] | None, limit: int, truncate: bool
    ) -> Response:
        self.check_target(url)
        assert self._session is not None, "use the Downloader as an async context manager"
        try:
            async with asyncio.timeout(self.policy.total_timeout_seconds):
                async with asyncio.timeout(self.policy.first_byte_timeout_seconds):
                    response = await self._session.get(url, allow_redirects=False)
                try:
                    return await self._read(url, response, media_types, limit, truncate)
                finally:
                    response.close()
        except BlockedAddress as blocked:
            raise Refused(DropReason.BLOCKED_ADDRESS, f"{url}: {blocked}") from None
        except aiohttp.ClientConnectorCertificateError as error:
            certificate = error.certificate_error
            code = getattr(certificate, "verify_code", None)
            reason = TLS_VERIFY_REASONS.get(code or 0, DropReason.TLS_UNTRUSTED)
            raise Refused(reason, f"{url}: {certificate}") from None
        except TimeoutError:
            raise _Retryable(DropReason.TIMEOUT, f"{url}: timed out") from None
        except aiohttp.ClientError as error:
            raise _Retryable(DropReason.NETWORK_ERROR, f"{url}: {error!r}") from None

    async def _read(
        self,
        url: str,
        response: aiohttp.ClientResponse,
        media_types: Collection[str] | None,
        limit: int,
        truncate: bool,
    ) -> Response:
        headers = {name.lower(): value for name, value in reversed(list(response.headers.items()))}
        fetched = Response(
            url=url,
            status=response.status,
            headers=headers,
            body=b"",
            wire_bytes=0,
            fetched_at=datetime.now(UTC),
        )
        if response.status in REDIRECT_STATUSES or response.status >= 400:
            return fetched
        if media_types is not None and fetched.media_type not in media_types:
            raise Refused(
                DropReason.UNSUPPORTED_CONTENT_TYPE, f"{url}: {fetched.media_type or 'no type'}"
            )
        declared = response.content_length
        if declared is not None and declared > limit and not truncate:
            raise Refused(DropReason.TOO_LARGE, f"{url}: Content-Length {declared} > {limit}")
        body = BoundedBody(limit, truncate=truncate)
        wire_bytes = 0
        try:
            decoder = decoder_for(headers.get("content-encoding", ""), body)
            async for chunk in response.content.iter_chunked(64 * 1024):
                wire_bytes += len(chunk)
                if wire_bytes > limit and not truncate:
                    raise BodyTooLarge(f"the body exceeds {limit} bytes on the wire")
                decoder.feed(chunk)
            decoder.finish()
        except BodyFull:
            pass
        except BodyTooLarge as error:
            raise Refused(DropReason.TOO_LARGE, f"{url}: {error}") from None
        except UnsupportedEncoding as error:
            raise Refused(DropReason.UNSUPPORTED_ENCODING, f"{url}: {error}") from None
        except CORRUPT_BODY_ERRORS as error:
            raise Refused(
                DropReason.UNSUPPORTED_ENCODING, f"{url}: corrupt body: {error}"
            ) from None
        return Response(
            url=url,
            status=response.status,
            headers=headers,
            body=body.bytes(),
            wire_bytes=wire_bytes,
            fetched_at=fetched.fetched_at,
        )
