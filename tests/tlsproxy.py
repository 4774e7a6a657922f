"""A TLS-terminating proxy on loopback: HTTPS in front of a plain-HTTP server (the rig's S3).

Bytes pass through unchanged, so an S3 request signed for the proxy's address is verified by the
server behind it as it would be behind any TLS terminator. It runs its own event loop in a
thread, so blocking clients (boto3) and subprocesses can use it from a test. `tls_endpoint`
serves a server over HTTPS with a certificate from a new test CA.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tests.certificates import TestCa, server_context


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(64 * 1024):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


class TlsProxy:
    """HTTPS on `address` (a free port) with `context`'s certificate, forwarded to `upstream`."""

    def __init__(self, upstream: str, context: ssl.SSLContext, address: str = "127.0.0.1") -> None:
        parts = urlsplit(upstream)
        assert parts.hostname is not None, upstream
        assert parts.port is not None, upstream
        self._upstream = (parts.hostname, parts.port)
        self._context = context
        self._address = address
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        serving = asyncio.start_server(self._forward, self._address, 0, ssl=self._context)
        self._server = asyncio.run_coroutine_threadsafe(serving, self._loop).result()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in self._connections:
            writer.close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the proxy first"
        port = self._server.sockets[0].getsockname()[1]
        return f"https://{self._address}:{port}"

    async def _forward(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        try:
            upstream, to_upstream = await asyncio.open_connection(*self._upstream)
        except OSError:
            to_client.close()
            return
        # Kept until the proxy stops: a connection the client pools outlives its requests.
        self._connections |= {to_client, to_upstream}
        await asyncio.gather(_pipe(client, to_upstream), _pipe(upstream, to_client))


@dataclass(frozen=True)
class TlsEndpoint:
    """A server over HTTPS: its URL, and the file of the CA that signed its certificate."""

    url: str
    ca_file: Path


@contextmanager
def tls_endpoint(upstream: str, directory: Path) -> Iterator[TlsEndpoint]:
    """`upstream` over HTTPS on 127.0.0.1, its certificate signed by a CA made in `directory`."""
    ca = TestCa(directory)
    proxy = TlsProxy(upstream, server_context(ca.leaf("endpoint", ["127.0.0.1"])))
    proxy.start()
    try:
        yield TlsEndpoint(proxy.url, ca.ca_file)
    finally:
        proxy.stop()
