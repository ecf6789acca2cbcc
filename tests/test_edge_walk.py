"""The edge fallback rules, sans I/O (checklist 235-237, 243)."""

from __future__ import annotations

import pytest

from softphone.signaling.edge_walk import EdgeWalk, SocketState

pytestmark = pytest.mark.pure

URIS = ["wss://a/signal", "wss://b/signal", "wss://c/signal"]


def test_chk_235_clean_close_keeps_the_index_abnormal_advances_and_wraps() -> None:
    walk = EdgeWalk(list(URIS))
    walk.set_state(SocketState.CONNECTING)
    assert walk.on_close(123) is False and walk.index == 0
    assert walk.on_close(1006) is True and walk.index == 1
    walk.on_close(1015)
    assert walk.index == 2
    walk.on_close(1006)
    assert walk.index == 0


@pytest.mark.parametrize("open_in", ["state", "previous"])
def test_chk_236_first_abnormal_close_of_an_open_socket_retries_the_same_edge(open_in: str) -> None:
    walk = EdgeWalk(list(URIS))
    walk.set_state(SocketState.CONNECTING)
    walk.on_open()
    if open_in == "previous":
        walk.set_state(SocketState.CONNECTING)
    walk.on_close(1006)
    assert walk.index == 0 and walk.target() == URIS[0]
    walk.on_close(1006)
    assert walk.index == 1


def test_chk_237_never_open_every_abnormal_close_advances() -> None:
    walk = EdgeWalk(list(URIS))
    walk.set_state(SocketState.CONNECTING)
    walk.on_close(1006)
    walk.on_close(1006)
    assert walk.index == 2


def test_heartbeat_timeout_then_abnormal_close_advances() -> None:
    walk = EdgeWalk(list(URIS))
    walk.on_open()
    walk.on_heartbeat_timeout()
    walk.on_close(1006)
    assert walk.index == 1


def test_chk_243_connect_timeout_advances() -> None:
    walk = EdgeWalk(list(URIS))
    walk.on_connect_timeout()
    assert walk.target() == URIS[1]


def test_preferred_wins_and_update_uris_resets() -> None:
    walk = EdgeWalk(list(URIS))
    walk.advance()
    walk.preferred = "wss://p/signal"
    assert walk.target() == "wss://p/signal" and walk.primary_target() == URIS[1]
    walk.update_uris(["wss://x/signal"])
    assert walk.index == 0
    with pytest.raises(ValueError):
        walk.update_uris([])
