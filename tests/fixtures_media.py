"""Media fixtures: keep every test call on 127.0.0.1.

Registered from ``conftest.py`` via ``pytest_plugins``. aioice drops 127.0.0.1
from its interface scan, so without this a loopback-only host gathers no
candidates and calls never connect.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from softphone.media.aiortc_hooks import use_host_addresses


@pytest.fixture
def loopback_media() -> Iterator[None]:
    """Gather ICE host candidates on 127.0.0.1 only for the test's duration."""
    use_host_addresses(["127.0.0.1"])
    try:
        yield
    finally:
        use_host_addresses(None)
