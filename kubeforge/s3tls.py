"""An S3 endpoint whose certificate is refused fails the request at once, saying how to trust it.

botocore's retry modes take every SSLError for a connection failure (it subclasses
ConnectionError) and try the request again: a store opened without the CA that signed its
endpoint's certificate would spin through all its attempts (minutes, with
KUBEFORGE_S3_MAX_ATTEMPTS' default) before failing with the same error. A certificate that fails
verification (an unknown issuer, an expiry, another host's name) fails again, so
`refuse_certificates_at_once` hooks botocore's `needs-retry` event ahead of its retry handler
and raises `CertificateRefused` on the first such failure. Other TLS errors (a handshake cut
short while the server restarts) and other connection failures are retried as before.

Imported only where boto3 is installed: by the components that talk to S3.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import botocore.exceptions
from urllib3.util.ssl_match_hostname import CertificateError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

RETRY_EVENT = "needs-retry.s3"
HANDLER_ID = "kubeforge-refuse-certificates-at-once"


class CertificateRefused(botocore.exceptions.SSLError):
    """The endpoint's certificate failed verification: a missing or wrong CA, not an outage."""

    fmt = (
        "the S3 endpoint {endpoint} presented a certificate that was refused ({error}); not "
        "retried: give the CA that signed it as a PEM file named by AWS_CA_BUNDLE (the "
        "storage.caBundle of a DataIngest or TrainingJob mounts one in its pods)"
    )


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what it wraps: botocore keeps urllib3's error in `kwargs`, urllib3 keeps
    the ssl module's as its argument, others chain it."""
    pending: list[object] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__, *current.args]
        if isinstance(current, botocore.exceptions.BotoCoreError):
            pending += current.kwargs.values()


def _refuse_at_once(caught_exception: BaseException | None = None, **_: Any) -> None:
    """botocore's `needs-retry` handler: raises instead of retrying a refused certificate."""
    if not isinstance(caught_exception, botocore.exceptions.SSLError):
        return
    for cause in _causes(caught_exception):
        # urllib3 matches an IP address's certificate to the host itself: its own error.
        if isinstance(cause, ssl.SSLCertVerificationError | CertificateError):
            url = urlsplit(str(caught_exception.kwargs.get("endpoint_url", "")))
            raise CertificateRefused(
                endpoint=f"{url.scheme}://{url.netloc}", error=cause
            ) from caught_exception


def refuse_certificates_at_once(client: S3Client) -> S3Client:
    """The client, its requests failing at the first refused certificate (`CertificateRefused`)
    instead of retrying it."""
    client.meta.events.register_first(RETRY_EVENT, _refuse_at_once, unique_id=HANDLER_ID)
    return client
