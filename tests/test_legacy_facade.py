"""The 1.x facade on a real gateway: setup/ready, Connection, connect/disconnect events."""

from __future__ import annotations

from collections.abc import Callable

from recorders import EventLog, eventually

from softphone.core.legacy import Connection, Device
from softphone.gateway.server import Gateway


async def test_a_ported_1x_app_makes_and_takes_calls(
    gateway: Gateway, make_token: Callable[..., str]
) -> None:
    alice, bob = Device(), Device()
    connections: list[Connection] = []
    bob.incoming(lambda conn: (connections.append(conn), conn.accept()))
    alice_log, bob_log = (
        EventLog(alice, "ready", "connect", "disconnect", "offline"),
        EventLog(bob, "ready", "connect", "disconnect"),
    )
    try:
        await bob.setup(make_token("bob"), {"chunderw": gateway.url})
        await alice.setup(make_token("alice"), {"chunderw": gateway.url})
        assert alice.status() == "ready" and alice_log.names() == ["ready"]
        conn = await alice.connect({"To": "client:bob"})
        assert isinstance(conn, Connection)
        (connected,) = await alice_log.wait_for("connect")
        assert connected is conn and alice.status() == "busy"
        assert alice.active_connection() is conn
        await bob_log.wait_for("connect")
        assert connections[0].parameters["From"] == "client:alice"
        assert conn.status() == "open"
        conn.mute()
        assert conn.is_muted()
        connections[0].disconnect()
        (ended,) = await alice_log.wait_for("disconnect")
        assert ended is conn
        await eventually(lambda: alice.status() == "ready")
    finally:
        await alice.destroy()
        await bob.destroy()
    assert alice.status() == "offline"
