"""Soak: every network fault many times over, counting recoveries (``pytest -m soak``).

Outside the default run (see ``addopts`` in pyproject.toml). Each fault is tried
``SOFTPHONE_SOAK_TRIES`` times (default 50). A try counts as recovered only when
audio is heard again both ways (tones detected in what each side records after
the fault) or, for faults that take the gateway's media down with it, when the
Device is registered again and a new call carries audio. The recovery-time
distribution is printed (run with ``-s``) and written to ``soak-report.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from faults import GatewayProcess, TcpProxy
from recorders import EventLog
from test_reconnection import ALICE_HZ, BOB_HZ, LiveCall, _live_call

from softphone.audio_backends import ToneSource
from softphone.core.device import Device
from softphone.gateway.server import Gateway

TRIES = int(os.environ.get("SOFTPHONE_SOAK_TRIES", "50"))
REPORT = Path(os.environ.get("SOFTPHONE_SOAK_REPORT", "soak-report.json"))

pytestmark = pytest.mark.soak


def _summary(name: str, times: list[float], failures: list[str]) -> dict[str, object]:
    ordered = sorted(times)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")

    summary = {
        "fault": name,
        "tries": len(times) + len(failures),
        "recovered": len(times),
        "recovery_rate": len(times) / max(1, len(times) + len(failures)),
        "seconds": {
            "min": ordered[0] if ordered else None,
            "median": statistics.median(ordered) if ordered else None,
            "p90": pct(0.9),
            "max": ordered[-1] if ordered else None,
        },
        "failures": failures[:10],
    }
    print(
        f"\nSOAK {name}: {summary['recovered']}/{summary['tries']} recovered; "
        f"recovery s: {summary['seconds']}"
    )
    existing = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    existing[name] = summary
    REPORT.write_text(json.dumps(existing, indent=2))
    return summary


@pytest.mark.parametrize("fault", ["cut", "reset", "stall"])
async def test_soak_websocket_faults_during_a_call(
    make_device: Callable[..., Device], gateway: Gateway, fault: str
) -> None:
    proxy = await TcpProxy(gateway.port).start()
    try:
        live: LiveCall = await _live_call(make_device, proxy, max_call_signaling_timeout_ms=30_000)
        call = live.call
        assert call is not None
        log = EventLog(call, "reconnected", "disconnect")
        times: list[float] = []
        failures: list[str] = []
        for attempt in range(TRIES):
            started = time.monotonic()
            try:
                if fault == "stall":
                    proxy.stall()
                    await call.wait_for("reconnecting", timeout=30)
                    proxy.stall(False)
                    proxy.cut()
                else:
                    getattr(proxy, fault)()
                await log.wait_for("reconnected", count=attempt + 1, timeout=60)
                await live.audio_flows(timeout=15)
                times.append(time.monotonic() - started)
            except (TimeoutError, AssertionError) as exc:
                failures.append(f"try {attempt}: {type(exc).__name__} {exc}")
                if call.status() == "closed":
                    break
        summary = _summary(f"websocket-{fault}", times, failures)
        assert summary["recovery_rate"] == 1.0, summary
        assert log.count("disconnect") == 0
    finally:
        await proxy.stop()


async def _registered_call_works(alice: Device, bob: Device) -> None:
    """Both registered again, and a fresh alice -> bob call carries audio both ways."""
    live = LiveCall(alice, bob)
    live.bob.remove_all_listeners("incoming")

    def on_incoming(call: object) -> None:
        from softphone.core.call import Call

        assert isinstance(call, Call)
        live.bob_calls.append(call)
        call.on("accept", lambda c: c.get_remote_stream().add_sink(live.bob_heard))
        call.accept()

    bob.on("incoming", on_incoming)
    call = await alice.connect(params={"To": "client:bob"})
    await call.wait_for("accept", timeout=15)
    call.get_remote_stream().add_sink(live.alice_heard)
    await live.audio_flows(timeout=15)
    call.disconnect()
    await live.bob_calls[-1].wait_for("disconnect", timeout=10)


async def test_soak_gateway_process_killed_and_restarted(
    make_token: Callable[..., str], loopback_media: None
) -> None:
    process = await GatewayProcess("edge-a").start()
    alice = Device(
        make_token("alice"), chunderw=process.url, file_input_stream=ToneSource([ALICE_HZ])
    )
    bob = Device(make_token("bob"), chunderw=process.url, file_input_stream=ToneSource([BOB_HZ]))
    times: list[float] = []
    failures: list[str] = []
    try:
        await asyncio.gather(alice.register(), bob.register())
        logs = [EventLog(d, "registered") for d in (alice, bob)]
        for attempt in range(TRIES):
            started = time.monotonic()
            process.kill()
            process.restart_on_same_port()
            await process.start()
            try:
                for log in logs:
                    await log.wait_for("registered", count=attempt + 1, timeout=60)
                await _registered_call_works(alice, bob)
                times.append(time.monotonic() - started)
            except (TimeoutError, AssertionError) as exc:
                failures.append(f"try {attempt}: {type(exc).__name__} {exc}")
    finally:
        await alice.destroy()
        await bob.destroy()
        process.kill()
    summary = _summary("gateway-kill-restart", times, failures)
    assert summary["recovery_rate"] == 1.0, summary


async def test_soak_edge_failover(make_token: Callable[..., str], loopback_media: None) -> None:
    edges = {
        "edge-a": await GatewayProcess("edge-a").start(),
        "edge-b": await GatewayProcess("edge-b").start(),
    }
    urls = [edges["edge-a"].url, edges["edge-b"].url]
    device = Device(make_token("alice"), chunderw=urls)
    log = EventLog(device, "registered")
    times: list[float] = []
    failures: list[str] = []
    try:
        await device.register()
        for attempt in range(TRIES):
            current = device.edge
            assert current in edges
            started = time.monotonic()
            edges[current].kill()
            try:
                await log.wait_for("registered", count=attempt + 2, timeout=90)
                assert device.edge != current
                times.append(time.monotonic() - started)
            except (TimeoutError, AssertionError) as exc:
                failures.append(f"try {attempt}: {type(exc).__name__} {exc}")
            edges[current].restart_on_same_port()
            await edges[current].start()
    finally:
        await device.destroy()
        for edge in edges.values():
            edge.kill()
    summary = _summary("edge-failover", times, failures)
    assert summary["recovery_rate"] == 1.0, summary


async def test_soak_media_blackhole_and_restore(
    make_device: Callable[..., Device], gateway: Gateway
) -> None:
    """The media path dies (every datagram dropped) and comes back: ICE restart heals it."""
    from faults import NatSwitch
    from test_ice_restart import ALICE_HZ as A_HZ
    from test_ice_restart import BOB_HZ as B_HZ
    from test_ice_restart import _call_through_nat, _hears

    switch = NatSwitch()
    try:
        call, bob_call, alice_heard, bob_heard = await _call_through_nat(make_device, switch)
        await _hears(bob_heard, A_HZ, 0)
        log = EventLog(call, "reconnecting", "reconnected", "disconnect")
        times: list[float] = []
        failures: list[str] = []
        for attempt in range(TRIES):
            started = time.monotonic()
            switch.blackholed = True
            try:
                await log.wait_for("reconnecting", count=attempt + 1, timeout=15)
                switch.blackholed = False
                await log.wait_for("reconnected", count=attempt + 1, timeout=30)
                marks = len(alice_heard.pcm()), len(bob_heard.pcm())
                await _hears(bob_heard, A_HZ, marks[1])
                await _hears(alice_heard, B_HZ, marks[0])
                times.append(time.monotonic() - started)
            except (TimeoutError, AssertionError) as exc:
                switch.blackholed = False
                failures.append(f"try {attempt}: {type(exc).__name__} {exc}")
                if call.status() == "closed":
                    break
        summary = _summary("media-blackhole-ice-restart", times, failures)
        assert summary["recovery_rate"] == 1.0, summary
        assert log.count("disconnect") == 0 and bob_call.status() == "open"
    finally:
        switch.close()
