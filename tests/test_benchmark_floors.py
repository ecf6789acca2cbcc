"""``python -m benchmarks.floors`` works end to end, at a tiny size.

The bare relay must pass the generators' SRTP back to them (a relay that dropped or
mangled the packets would measure the CPU of doing nothing), on asyncio and on
uvloop, and the idle-connection probe must see every connection it opened held by
the server, over TLS too. No figure is asserted: the costs are the benchmark's report.
"""

from __future__ import annotations

import pytest

from benchmarks import floors


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_the_bare_relay_passes_every_packet_and_measures_its_cpu(loop: str) -> None:
    result = await floors.measure_relay(2, loop, window_s=1.0, settle_s=1.0)

    assert (result.loop, result.calls) == (loop, 2)
    assert result.delivery > 0.9, result
    assert result.cpu_per_call_second > 0, result


@pytest.mark.parametrize("tls", [False, True])
async def test_the_idle_connection_probe_holds_every_connection(tls: bool) -> None:
    result = await floors.measure_idle_connections(tls, 20)

    assert result.connections == 20
    assert result.tls is tls
