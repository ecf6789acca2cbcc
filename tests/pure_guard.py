"""Tests marked ``pure`` must not touch the network, start threads or run programs.

``unshare -n python -m pytest -m pure`` proves they need no network; this plugin
also catches what a network namespace does not (a socket to 127.0.0.1 still opens
there, threads and subprocesses still start): while a ``pure`` test runs, creating
an IP socket, starting a thread or a subprocess fails the test. The event loop's
own wake-up pipe is an AF_UNIX socket pair and stays allowed.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

_IP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class ImpureTestError(AssertionError):
    """A ``pure`` test reached for a socket, a thread or a subprocess."""


@pytest.fixture(autouse=True)
def _forbid_io_in_pure_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    if request.node.get_closest_marker("pure") is None:
        yield
        return
    real_socket_init = socket.socket.__init__

    def socket_init(self: socket.socket, family: Any = -1, *args: Any, **kwargs: Any) -> None:
        if family in _IP_FAMILIES or family == -1:
            raise ImpureTestError(f"a pure test opened an IP socket ({family!r})")
        real_socket_init(self, family, *args, **kwargs)

    def no_thread(self: threading.Thread) -> None:
        raise ImpureTestError(f"a pure test started a thread ({self.name})")

    def no_subprocess(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        raise ImpureTestError(f"a pure test started a subprocess ({args[:1]!r})")

    monkeypatch.setattr(socket.socket, "__init__", socket_init)
    monkeypatch.setattr(threading.Thread, "start", no_thread)
    monkeypatch.setattr(subprocess.Popen, "__init__", no_subprocess)
    yield
