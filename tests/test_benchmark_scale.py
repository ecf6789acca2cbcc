"""``python -m benchmarks --sections scale`` works end to end, at a tiny size.

The section's own code path (:func:`benchmarks.scale.run`) with 50 idle devices over
two gateways (ws) and over ``--workers 2`` (wss), one call from gateway A to a device
on gateway B, and one bridged call through ``--workers 2``: every device registers,
both gateway processes take some, Redis holds their presence, the call is set up with
media, and no process the run started is left afterwards. No figure is asserted:
speed and size are the benchmark's report, not a test.
"""

from __future__ import annotations

import shutil

import pytest

from benchmarks import scale
from benchmarks.processes import Children

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (apt-get install redis-server)",
)


async def test_tiny_scale_run_measures_every_part_and_leaves_no_process() -> None:
    children = Children()
    emitted: list[str] = []

    report = await scale.run("tiny", emit=emitted.append, children=children)

    assert emitted == report.lines
    assert [(r.spec.layout, r.spec.tls) for r in report.registrations] == [
        ("pair", False),
        ("workers", True),
    ]
    for result in report.registrations:
        assert (result.done, result.failed) == (50, 0), result
        assert len(result.gateways) == 2
        assert all(g.connections > 0 for g in result.gateways), result.gateways
        # 50 sockets (the generators' round robin, or the kernel's SO_REUSEPORT spread)
        assert sum(g.connections for g in result.gateways) >= 50
        assert result.presence_seconds is not None  # every identity reached Redis
        assert result.redis_bytes > 0

    (calls,) = report.calls
    assert (calls.calls, calls.failed, len(calls.setup), len(calls.media)) == (1, 0, 1, 1)
    assert calls.media[0] >= calls.setup[0] > 0

    ((level,),) = report.sweeps
    assert (level.workers, level.calls, level.up) == (2, 1, True)
    assert level.delivery > 0.5  # the bridged call carried its media
    assert set(level.probe_p99) == {"gw-w1", "gw-w2"}  # one probe per worker
    assert {"gw-w1", "gw-w2", "redis", "callers", "callees", "machine"} <= set(level.cores)

    assert any("largest number of calls kept in real time" in line for line in report.lines)
    assert len(children.popens) >= 8  # redis-server and gateways of each measurement
    assert children.adopted  # the --workers processes, known by pid
    assert children.alive() == []
