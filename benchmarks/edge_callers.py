"""Callers that set up calls as fast as they can, for the cross-gateway setup rate.

``python -m benchmarks.edge_callers --url URL --calls N --inflight K`` makes N
load devices (:mod:`benchmarks.load`'s: real signaling, ICE, DTLS, SRTP and
pre-encoded speech, nothing decoded) on the gateway at URL, opens their
signaling (``register``) before the clock starts, then has them call
``client:loadcallee<i>`` with at most K calls being set up at a time. Each call
is timed from ``connect()`` to its ``accept`` event and to the first RTP packet
the caller receives (media set up end to end: caller -> gateway A ->
gateway-to-gateway leg -> gateway B -> callee and back), then hung up, so only
the calls being set up are up at once. Prints one JSON line: ``{"setup": [s...],
"media": [s...], "failed": n, "t_first": s, "t_last": s}`` (monotonic times of
the first ``connect()`` and the last first-packet) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

from benchmarks.harness import token
from benchmarks.load import CODECS, LoadPeerConnection, Ticker, encoded_speech
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.media.aiortc_hooks import use_host_addresses
from softphone.media.peer_connection import PeerConnection

CALL_TIMEOUT_S = 30.0


class Caller:
    """One load device and the peer connection of its current call."""

    def __init__(self, url: str, identity: str, ticker: Ticker, codec: str) -> None:
        other = "pcmu" if codec == "opus" else "opus"
        self.pc: LoadPeerConnection | None = None

        def factory(configuration: Mapping[str, Any]) -> PeerConnection:
            self.pc = LoadPeerConnection(ticker, ice_servers=[], codec_preferences=(codec, other))
            return self.pc

        self.device = Device(
            token(identity),
            {"chunderw": url, "codec_preferences": [codec, other], "rtc_peer_connection": factory},
        )
        assert self.device.audio is not None
        for name in ("incoming", "outgoing", "disconnect"):
            getattr(self.device.audio, name)(False)

    async def call(self, to: str) -> tuple[float, float]:
        """Seconds from ``connect()`` to ``accept`` and to the first RTP packet received."""
        started = time.monotonic()
        accepted: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        def on_accept(_call: Call) -> None:
            if not accepted.done():
                accepted.set_result(time.monotonic())

        def on_end(*_args: object) -> None:
            if not accepted.done():
                accepted.set_exception(ConnectionError(f"call to {to} ended before accept"))

        call = await self.device.connect(params={"To": to})
        call.on("accept", on_accept)
        call.on("disconnect", on_end)
        call.on("cancel", on_end)
        call.on("reject", on_end)
        call.on("error", on_end)
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                accept_at = await accepted
                while self.pc is None or await self.pc.received() == 0:
                    await asyncio.sleep(0.005)
                media_at = time.monotonic()
        finally:
            call.disconnect()
        return accept_at - started, media_at - started


async def _run(url: str, calls: int, inflight: int, codec: str) -> None:
    use_host_addresses(["127.0.0.1"])
    ticker = Ticker(encoded_speech(codec), CODECS[codec].clock_rate // 50)
    ticker.start()
    callers = [Caller(url, f"loadcaller{i}", ticker, codec) for i in range(calls)]
    await asyncio.gather(*(c.device.register() for c in callers))
    gate = asyncio.Semaphore(inflight)
    setup: list[float] = []
    media: list[float] = []
    failed = 0

    async def one(i: int) -> None:
        nonlocal failed
        async with gate:
            try:
                accept_s, media_s = await callers[i].call(f"client:loadcallee{i}")
            except (ConnectionError, TimeoutError) as exc:
                failed += 1
                print(f"call {i}: {exc!r}", file=sys.stderr, flush=True)
                return
            setup.append(accept_s)
            media.append(media_s)

    t_first = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(calls)))
    t_last = time.monotonic()
    result = {
        "setup": setup,
        "media": media,
        "failed": failed,
        "t_first": t_first,
        "t_last": t_last,
    }
    print(json.dumps(result), flush=True)
    for caller in callers:
        await caller.device.destroy()


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--inflight", type=int, default=10)
    parser.add_argument("--codec", choices=tuple(CODECS), default="opus")
    args = parser.parse_args()
    asyncio.run(_run(args.url, args.calls, args.inflight, args.codec))


if __name__ == "__main__":
    main()
