"""The gateway records its calls in the durable store, and the history survives a restart."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from calltools import Listener

from softphone.audio_backends import ToneSource
from softphone.cli import main
from softphone.core.device import Device
from softphone.gateway.accounts import DEV_ACCOUNT_SID, AccountStore
from softphone.gateway.call_store import CallStore, CallStoreError
from softphone.gateway.server import Gateway, GatewayConfig

TokenFactory = Callable[..., str]


async def test_calls_are_kept_across_a_gateway_restart(
    tmp_path: Path,
    accounts: AccountStore,
    make_token: TokenFactory,
    loopback_media: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "calls.sqlite3"
    gateway = await Gateway(accounts, GatewayConfig(port=0, db_path=db)).start()
    alice = Device(make_token("alice"), chunderw=gateway.url, file_input_stream=ToneSource([440]))
    bob = Device(make_token("bob"), chunderw=gateway.url)
    try:
        echo = await alice.connect(params={"To": "echo", "topic": "store"})
        await echo.wait_for("accept", timeout=15)
        echo.disconnect()
        refused = Listener(bob, accept=False)
        await bob.register()
        dialled = await alice.connect(params={"To": "client:bob"})
        pending = await refused.wait_call()
        pending.reject()
        await dialled.wait_for("disconnect", timeout=15)
        live = await alice.connect(params={"To": "echo"})
        await live.wait_for("accept", timeout=15)
        live_sid = live.call_sid
    finally:
        await alice.destroy()
        await bob.destroy()
        await gateway.stop()  # the live call ends with the gateway

    restarted = await Gateway(accounts, GatewayConfig(port=0, db_path=db)).start()
    await restarted.stop()
    with CallStore(db) as store:
        echo_record = store.get_call(DEV_ACCOUNT_SID, echo.call_sid or "")
        dialled_record = store.get_call(DEV_ACCOUNT_SID, dialled.call_sid or "")
        live_record = store.get_call(DEV_ACCOUNT_SID, live_sid or "")
        assert store.get_call("AC" + "0" * 32, echo.call_sid or "") is None  # other account
        events = [e.name for e in store.events(DEV_ACCOUNT_SID, echo.call_sid or "")]
        children = store.list_calls(DEV_ACCOUNT_SID, page_size=50)
    assert echo_record is not None and echo_record.status == "completed"
    assert echo_record.from_ == "client:alice" and echo_record.to == "echo"
    assert echo_record.duration is not None and echo_record.duration >= 0
    assert events == ["invite", "ended"]  # the custom parameter rode on the invite
    assert dialled_record is not None and dialled_record.status == "busy"
    assert any(c.parent_call_sid == dialled.call_sid for c in children.items)
    assert live_record is not None and live_record.ended  # closed when the gateway stopped

    # the history is readable from the command line
    assert main(["calls", "show", echo.call_sid or "", "--db", str(db), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert json.dumps(shown).count(echo.call_sid or "") >= 1


async def test_a_store_file_that_is_not_sqlite_stops_the_gateway_before_it_binds(
    tmp_path: Path, accounts: AccountStore
) -> None:
    bad = tmp_path / "calls.sqlite3"
    bad.write_text("not a database at all, just text " * 100)
    gateway = Gateway(accounts, GatewayConfig(port=0, db_path=bad))
    with pytest.raises(CallStoreError):
        await gateway.start()
    with pytest.raises(RuntimeError, match="not started"):
        _ = gateway.port  # nothing was bound


def test_gateway_store_options_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["gateway", "--no-tls", "--port", "9"]
    assert main([*base, "--db", str(tmp_path / "x.sqlite3"), "--no-db"]) == 2
    assert "--db and --no-db contradict each other" in capsys.readouterr().err
    assert main([*base, "--keep-calls", "0"]) == 2
    assert "--keep-calls/--keep-days" in capsys.readouterr().err
