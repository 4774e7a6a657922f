"""Fixtures of the workload tier: the local test web and the TLS test web, each started once per
session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.testweb import LocalWeb, build_web, stop_web
from tests.tlsweb import TlsWeb, build_tls_web, stop_tls_web


@pytest.fixture(scope="session")
def web() -> Iterator[LocalWeb]:
    started = build_web()
    yield started
    stop_web(started)


@pytest.fixture(scope="session")
def tls_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsWeb]:
    started = build_tls_web(tmp_path_factory.mktemp("tls"))
    yield started
    stop_tls_web(started)
