"""The S3 client logs once when it starts waiting for its store, and once when it answers again.

Real: the S3 client the components make (`s3_client_from_environment`) against an HTTP server on
loopback that fails the first requests (a 503, as a store that is starting answers, or a
connection closed before any answer, as a store that is down), then answers them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kubeforge.storage import MAX_ATTEMPTS_VARIABLE, s3_client_from_environment

SECRET = "recognisable-secret-key-value"


@contextmanager
def store_failing_first(failures: int, how: str) -> Iterator[str]:
    """An endpoint whose first `failures` requests fail `how` (503 or closed); its URL."""
    remaining = [failures]

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if remaining[0] > 0:
                remaining[0] -= 1
                if how == "closed":
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("ETag", '"0"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("how", ["503", "closed"])
def test_an_outage_is_logged_when_it_starts_and_when_it_ends(
    how: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name, value in {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test-access-key",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        MAX_ATTEMPTS_VARIABLE: "5",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    caplog.set_level(logging.INFO, logger="kubeforge.s3wait")
    with store_failing_first(3, how) as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        client = s3_client_from_environment()
        client.put_object(Bucket="bucket", Key="key", Body=b"data")
        client.put_object(Bucket="bucket", Key="key", Body=b"data")  # no outage: nothing logged
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in records] == ["WARNING", "INFO"], records
    warning, info = (message for _, message in records)
    assert warning.startswith(f"waiting for the S3 store at {endpoint}: ")
    assert ("HTTP 503" in warning) == (how == "503")
    assert "(attempt 1); retrying with backoff" in warning
    assert info.startswith(f"the S3 store at {endpoint} answered again after ")
    assert not any(SECRET in message or "test-access-key" in message for _, message in records)
