"""A refused certificate fails an S3 request at once; other TLS failures are still retried.

Real: the S3 client the components make (`s3_client_from_environment`, its default attempts)
against servers on loopback: one presents a certificate that is self-signed, issued for another
host or expired, one closes each
connection before the TLS handshake (a store restarting behind its TLS terminator). botocore's
`before-send` event, emitted once per request sent, counts the attempts.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from kubeforge.s3tls import CertificateRefused
from kubeforge.storage import MAX_ATTEMPTS_VARIABLE, s3_client_from_environment
from tests.certificates import Leaf, TestCa, self_signed, server_context


@contextmanager
def serving(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A server on a free loopback port that `answer`s each connection; its https URL."""
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        with suppress(OSError):  # the listener closed
            while True:
                connection, _ = listener.accept()
                with connection, suppress(OSError):
                    answer(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept; close alone does not
        listener.close()
        thread.join()


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 reads the process's environment: credentials, a region, no CA bundle."""
    for name, value in {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)


def put_attempts(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, botocore.exceptions.SSLError]:
    """How many times one PutObject was sent to `endpoint`, and what it raised."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    client = s3_client_from_environment()
    attempts = []

    def count(**_: Any) -> None:
        attempts.append(1)

    client.meta.events.register("before-send.s3", count)
    with pytest.raises(botocore.exceptions.SSLError) as raised:
        client.put_object(Bucket="bucket", Key="key", Body=b"data")
    return len(attempts), raised.value


def certificate(case: str, directory: Path, monkeypatch: pytest.MonkeyPatch) -> Leaf:
    """The endpoint's certificate of a case; the client trusts the test CA but for self-signed."""
    if case == "self-signed":
        return self_signed(directory, "endpoint", ["127.0.0.1"])
    ca = TestCa(directory)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca.ca_file))
    if case == "wrong-host":
        return ca.leaf("endpoint", ["s3.other.test"])
    return ca.leaf("endpoint", ["127.0.0.1"], expired=True)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("self-signed", "CERTIFICATE_VERIFY_FAILED"),
        ("wrong-host", "hostname '127.0.0.1' doesn't match 's3.other.test'"),
        ("expired", "certificate has expired"),
    ],
)
def test_a_refused_certificate_fails_the_first_attempt_naming_the_endpoint(
    case: str, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MAX_ATTEMPTS_VARIABLE, raising=False)  # the default: 20
    context = server_context(certificate(case, tmp_path, monkeypatch))

    def handshake(connection: socket.socket) -> None:
        context.wrap_socket(connection, server_side=True).close()

    with serving(handshake) as endpoint:
        attempts, error = put_attempts(endpoint, monkeypatch)
    assert attempts == 1
    assert isinstance(error, CertificateRefused)
    message = str(error)
    assert f"the S3 endpoint {endpoint} presented a certificate that was refused" in message
    assert reason in message
    assert "AWS_CA_BUNDLE" in message
    assert isinstance(error.__cause__, botocore.exceptions.SSLError)


def test_a_connection_cut_before_the_handshake_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MAX_ATTEMPTS_VARIABLE, "3")
    with serving(lambda connection: connection.close()) as endpoint:
        attempts, error = put_attempts(endpoint, monkeypatch)
    assert attempts == 3
    assert not isinstance(error, CertificateRefused)
    assert not isinstance(error.kwargs.get("error"), ssl.SSLCertVerificationError)
