"""The gateway under abuse: what careless or hostile clients cost everybody else.

Each scenario runs ``softphone gateway --no-tls`` in its own process (so a stuck
event loop shows) with its default limits unless told otherwise, and measures
from outside:

* :func:`heartbeat_while_not_reading`: a token-less client floods bad frames and
  never reads its socket; the longest heartbeat silence a well-behaved client sees
  (the JS SDK drops a socket silent for 15 s) and when the gateway closed the abuser;
* :func:`dtmf_flood_memory`: ``dtmf`` frames of a million digits on an echo call;
  the gateway's resident memory before, after the flood and after the hangup;
* :func:`medialess_calls`: ``invite``s to ``echo`` whose media never starts; how
  many the gateway took, how long until it ended them, its open file descriptors;
* :func:`connect_latency_during_flood`: clients flooding bad frames as fast as the
  socket goes (reconnecting when closed); how long a new client waits from socket
  open to ``connected``, and how much log the gateway wrote meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from websockets.exceptions import ConnectionClosed

from benchmarks.harness import token
from benchmarks.wire import (
    Flooder,
    GatewayChild,
    WireClient,
    client_frame,
    connect_latency,
    dead_offer,
    temp_sid,
)
from softphone.signaling.messages import Answer, Dtmf, Hangup, Invite

BAD_FRAME = "this is not JSON"


@dataclass
class HeartbeatFigure:
    """Heartbeats seen by a good client while a non-reading client attacks."""

    label: str
    window_s: float
    longest_silence_s: float
    heartbeats: int
    abuser_closed_after_s: float | None


@dataclass
class MemoryFigure:
    """Gateway ``VmRSS`` around a flood of huge ``dtmf`` frames."""

    frames: int
    digits: int
    frames_written: int
    before_kb: int
    after_flood_kb: int
    after_hangup_kb: int
    close_code: int | None


@dataclass
class MedialessFigure:
    """``invite``s to echo that never start media."""

    sent: int
    connections: int
    answered: int
    refused: int
    refusal_codes: list[int]
    setup_s: float
    ended: int
    ended_after_s: list[float]
    end_codes: list[int]
    wait_s: float
    fds_before: int
    fds_peak: int
    fds_after: int


@dataclass
class FloodFigure:
    """New clients' connect latency while others flood bad frames."""

    flooders: int
    flood_s: float
    baseline_s: list[float]
    during_s: list[float]
    frames_sent: int
    connections: int
    log_bytes: int
    timeouts: int = 0
    notes: list[str] = field(default_factory=list)


async def heartbeat_while_not_reading(
    log_dir: Path, window_s: float, label: str = "defaults", gateway_args: Sequence[str] = ()
) -> HeartbeatFigure:
    """A good client's longest heartbeat gap while a non-reading client floods bad frames."""
    async with GatewayChild(log_dir / f"heartbeat-{label}.log", *gateway_args) as gateway:
        good = await WireClient(gateway.url, token("goodclient")).start()
        abuser = Flooder(gateway.port, client_frame(BAD_FRAME), read=False, reconnect=False)
        started = time.monotonic()
        abuser.start()
        closed_after: float | None = None
        try:
            while time.monotonic() - started < window_s:
                await asyncio.sleep(0.1)
                if closed_after is None and abuser.closed_by_gateway.is_set():
                    closed_after = time.monotonic() - started
            ended = time.monotonic()
            silence = good.longest_silence(started, ended)
            count = len([t for t in good.heartbeats if started < t < ended])
        finally:
            await asyncio.to_thread(abuser.stop)
            await good.stop()
    return HeartbeatFigure(label, window_s, silence, count, closed_after)


async def dtmf_flood_memory(log_dir: Path, frames: int, digits: int) -> MemoryFigure:
    """Gateway memory around ``frames`` ``dtmf`` frames of ``digits`` digits on one call."""
    async with GatewayChild(log_dir / f"dtmf-{digits}.log", "--log-level", "warn") as gateway:
        client = await WireClient(gateway.url, token("dtmfclient")).start()
        try:
            await client.send(
                Invite(callsid=temp_sid(1), sdp=await dead_offer(), twilio={"params": "To=echo"})
            )
            answer = await client.wait_for("answer", timeout=20)
            assert isinstance(answer, Answer) and answer.callsid
            await asyncio.sleep(1)
            before = gateway.rss_kb()
            written = 0
            frame = Dtmf(callsid=answer.callsid, dtmf="1" * digits)
            with contextlib.suppress(ConnectionClosed):
                for _ in range(frames):
                    await client.send(frame)
                    written += 1
            await asyncio.sleep(2)
            after_flood = gateway.rss_kb()
            with contextlib.suppress(ConnectionClosed):
                await client.send(Hangup(callsid=answer.callsid))
            await asyncio.sleep(3)
            after_hangup = gateway.rss_kb()
            close_code = await client.closed(0.1)
        finally:
            await client.stop()
    return MemoryFigure(frames, digits, written, before, after_flood, after_hangup, close_code)


async def medialess_calls(
    log_dir: Path, count: int, wait_s: float, connections: int = 10
) -> MedialessFigure:
    """``count`` echo calls whose media never starts, from ``connections`` clients at once.

    Each client sends its share of ``invite``s in one go (a share stays within the
    default frame burst, so this measures the call limits, not the frame rate limit).
    """
    async with GatewayChild(log_dir / "medialess.log", "--log-level", "warn") as gateway:
        clients = [
            await WireClient(gateway.url, token(f"medialess{n}")).start()
            for n in range(connections)
        ]
        try:
            offer = await dead_offer()
            fds_before = gateway.fd_count()
            started = time.monotonic()
            for index in range(count):
                await clients[index % connections].send(
                    Invite(callsid=temp_sid(index), sdp=offer, twilio={"params": "To=echo"})
                )
            temp_sids = {temp_sid(index) for index in range(count)}
            fds_peak = fds_before

            def hangups() -> list[Hangup]:
                return [m for c in clients for m in c.of_type("hangup") if isinstance(m, Hangup)]

            def answered() -> set[str]:
                return {
                    m.callsid
                    for c in clients
                    for m in c.of_type("answer")
                    if isinstance(m, Answer) and m.callsid
                }

            deadline = started + 60
            while time.monotonic() < deadline:
                refused = [m for m in hangups() if m.callsid in temp_sids]
                fds_peak = max(fds_peak, gateway.fd_count())
                if len(answered()) + len(refused) >= count:
                    break
                await asyncio.sleep(0.05)
            setup_s = time.monotonic() - started
            calls = answered()
            ended_at: dict[str, float] = {}
            end_codes: set[int] = set()
            end_deadline = time.monotonic() + wait_s
            while time.monotonic() < end_deadline and len(ended_at) < len(calls):
                for message in hangups():
                    sid = message.callsid
                    if sid is not None and sid in calls and sid not in ended_at:
                        ended_at[sid] = time.monotonic() - started
                        end_codes.add(int((message.error or {}).get("code", 0)))
                fds_peak = max(fds_peak, gateway.fd_count())
                await asyncio.sleep(0.1)
            await asyncio.sleep(1)
            fds_after = gateway.fd_count()
        finally:
            for client in clients:
                await client.stop()
    return MedialessFigure(
        sent=count,
        connections=connections,
        answered=len(calls),
        refused=len(refused),
        refusal_codes=sorted({int((m.error or {}).get("code", 0)) for m in refused}),
        setup_s=setup_s,
        ended=len(ended_at),
        ended_after_s=sorted(ended_at.values()),
        end_codes=sorted(end_codes),
        wait_s=wait_s,
        fds_before=fds_before,
        fds_peak=fds_peak,
        fds_after=fds_after,
    )


async def connect_latency_during_flood(
    log_dir: Path, flood_s: float, flooders: int = 2
) -> FloodFigure:
    """New clients' connect latency while ``flooders`` sockets send bad frames flat out."""
    async with GatewayChild(log_dir / "flood.log") as gateway:
        probe_token = token("prober")
        baseline = [await connect_latency(gateway.url, probe_token) for _ in range(5)]
        log_before = gateway.log_bytes()
        threads = [Flooder(gateway.port, client_frame(BAD_FRAME)) for _ in range(flooders)]
        for thread in threads:
            thread.start()
        during: list[float] = []
        timeouts = 0
        started = time.monotonic()
        try:
            while time.monotonic() - started < flood_s:
                try:
                    during.append(await connect_latency(gateway.url, probe_token, timeout=30))
                except TimeoutError:
                    timeouts += 1
                await asyncio.sleep(0.2)
        finally:
            for thread in threads:
                await asyncio.to_thread(thread.stop)
        log_bytes = gateway.log_bytes() - log_before
    return FloodFigure(
        flooders=flooders,
        flood_s=flood_s,
        baseline_s=baseline,
        during_s=during,
        frames_sent=sum(t.frames_sent for t in threads),
        connections=sum(t.connections for t in threads),
        log_bytes=log_bytes,
        timeouts=timeouts,
    )


def report_lines(
    heartbeat: Sequence[HeartbeatFigure],
    memory: Sequence[MemoryFigure],
    medialess: MedialessFigure | None,
    flood: FloodFigure | None,
) -> list[str]:
    """The section's report, one figure per line."""
    lines: list[str] = []
    for h in heartbeat:
        closed = (
            f"abuser closed by the gateway after {h.abuser_closed_after_s:.1f} s"
            if h.abuser_closed_after_s is not None
            else "abuser never closed"
        )
        lines.append(
            f"heartbeat ({h.label}): longest silence {h.longest_silence_s:5.1f} s over a "
            f"{h.window_s:.0f} s attack ({h.heartbeats} heartbeats); {closed}"
        )
    for m in memory:
        lines.append(
            f"dtmf flood {m.frames} x {m.digits:,} digits ({m.frames_written} written; socket "
            f"{'closed by the gateway, code ' + str(m.close_code) if m.close_code else 'open'}"
            f"): RSS {m.before_kb / 1024:.0f} MiB -> "
            f"{m.after_flood_kb / 1024:.0f} MiB after the flood "
            f"({(m.after_flood_kb - m.before_kb) / 1024:+.1f}), "
            f"{m.after_hangup_kb / 1024:.0f} MiB after hangup "
            f"({(m.after_hangup_kb - m.before_kb) / 1024:+.1f})"
        )
    if medialess is not None:
        m2 = medialess
        ended = (
            f"{m2.ended}/{m2.answered} ended, after {min(m2.ended_after_s):.1f}-"
            f"{max(m2.ended_after_s):.1f} s (codes {m2.end_codes})"
            if m2.ended_after_s
            else f"0/{m2.answered} ended within {m2.wait_s:.0f} s"
        )
        lines.append(
            f"media-less echo calls: {m2.sent} invites from {m2.connections} clients, replied "
            f"in {m2.setup_s:.1f} s: {m2.answered} "
            f"answered, {m2.refused} refused (codes {m2.refusal_codes}); {ended}; gateway fds "
            f"{m2.fds_before} -> peak {m2.fds_peak} -> {m2.fds_after}"
        )
    if flood is not None:
        f = flood
        during = (
            f"median {statistics.median(f.during_s) * 1000:.0f} ms, max "
            f"{max(f.during_s) * 1000:.0f} ms over {len(f.during_s)} clients"
            if f.during_s
            else "no client connected"
        )
        lines.append(
            f"connect latency during a bad-frame flood ({f.flooders} sockets, "
            f"{f.frames_sent / f.flood_s:,.0f} frames/s, {f.connections} connections): {during}"
            f" (timeouts {f.timeouts}; without flood median "
            f"{statistics.median(f.baseline_s) * 1000:.0f} ms); gateway log "
            f"{f.log_bytes / 1e6:.2f} MB in {f.flood_s:.0f} s"
        )
    return lines


async def run(log_dir: Path, quick: bool) -> list[str]:
    """Every scenario; the report lines."""
    window = 20.0 if quick else 30.0
    heartbeat = [await heartbeat_while_not_reading(log_dir, window)]
    heartbeat.append(
        await heartbeat_while_not_reading(
            log_dir, window, "frame rate limit off", ["--max-frame-rate", "0"]
        )
    )
    memory = [
        await dtmf_flood_memory(log_dir, 20, 1_000_000),
        await dtmf_flood_memory(log_dir, 20, 60_000),
    ]
    medialess = await medialess_calls(log_dir, 100 if quick else 500, 25.0 if quick else 40.0)
    flood = await connect_latency_during_flood(log_dir, 5.0)
    return report_lines(heartbeat, memory, medialess, flood)
