"""Fixtures of the workload tier: the local test web, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.testweb import LocalWeb, build_web, stop_web


@pytest.fixture(scope="session")
def web() -> Iterator[LocalWeb]:
    started = build_web()
    yield started
    stop_web(started)
