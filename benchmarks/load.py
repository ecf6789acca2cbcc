"""Cheap load endpoints: many Devices in one process, for the gateway CPU benchmarks.

A full Device encodes and decodes every packet (about 0.05 CPU-s per second
per call leg), so two cores could not drive 50 bridged calls. Load devices
keep everything real on the wire (signaling, ICE, DTLS, SRTP, 50 packets/s of
speech each way) but send speech pre-encoded once at start through a
:class:`PacketTrack` and never decode what they receive.

``python -m benchmarks.load --url URL --role callee|caller --calls N --codec C``
runs N devices (``loadcallee<i>`` answer, ``loadcaller<i>`` call them),
prints one JSON line when all calls are up and then every second:
``{"t": monotonic s, "up": calls, "sent": packets, "received": packets,
"lag_p99": s}`` (packets are totals since start).
It exits when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from typing import Any

from benchmarks.harness import token
from benchmarks.speech import speech_clip
from softphone.audio_backends.base import FRAME_SAMPLES, AudioSink, AudioSource
from softphone.core.call import Call
from softphone.core.device import Device
from softphone.media.aiortc_hooks import use_host_addresses
from softphone.media.audio_codecs import make_encoder
from softphone.media.packet_track import PacketTrack
from softphone.media.peer_connection import PeerConnection
from softphone.media.sdp import CodecInfo

CODECS = {"opus": CodecInfo(111, "opus", 48000, 2), "pcmu": CodecInfo(0, "PCMU", 8000)}


def encoded_speech(codec: str) -> list[bytes]:
    """The benchmark speech clip, encoded once in 20 ms payloads."""
    clip = speech_clip()
    encoder = make_encoder(CODECS[codec])
    payloads: list[bytes] = []
    for start in range(0, len(clip) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        payloads += encoder.encode(clip[start : start + FRAME_SAMPLES])
    return payloads


class Ticker:
    """Pushes the next pre-encoded payload into every registered track every 20 ms."""

    def __init__(self, payloads: list[bytes], frame_units: int) -> None:
        self.payloads = payloads
        self.frame_units = frame_units
        self.tracks: list[PacketTrack] = []
        self.sent = 0
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        while True:
            payload = self.payloads[tick % len(self.payloads)]
            for track in self.tracks:
                track.push(payload, tick * self.frame_units)
            self.sent += len(self.tracks)
            tick += 1
            due = start + tick * 0.02
            self.lags.append(max(0.0, loop.time() - due))
            await asyncio.sleep(max(0.0, due - loop.time()))


class LoadPeerConnection(PeerConnection):
    """Sends the ticker's packets once negotiated; decodes nothing it receives."""

    def __init__(self, ticker: Ticker, **options: Any) -> None:
        super().__init__(**options)
        self._ticker = ticker

    def set_remote_sink(self, sink: AudioSink | None) -> None:
        """Ignored: load devices never decode."""

    def _attach(self) -> None:
        codec = self.send_codec
        if codec is None:
            return
        track = PacketTrack(codec.clock_rate)
        self.use_packet_track(track)
        self._ticker.tracks.append(track)

    async def apply_answer(self, sdp: str) -> None:
        await super().apply_answer(sdp)
        self._attach()

    async def create_answer(self, offer_sdp: str, source: AudioSource | None) -> str:
        answer = await super().create_answer(offer_sdp, source)
        self._attach()
        return answer

    async def received(self) -> int:
        """RTP packets received so far."""
        stats = await self.get_stats()
        return int(stats.get("packetsReceived") or 0)


async def _run(url: str, role: str, calls: int, codec: str) -> None:
    use_host_addresses(["127.0.0.1"])
    ticker = Ticker(encoded_speech(codec), CODECS[codec].clock_rate // 50)
    ticker.start()
    other = "pcmu" if codec == "opus" else "opus"
    pcs: list[LoadPeerConnection] = []

    def factory(configuration: Mapping[str, Any]) -> PeerConnection:
        pc = LoadPeerConnection(ticker, ice_servers=[], codec_preferences=(codec, other))
        pcs.append(pc)
        return pc

    def new_device(identity: str) -> Device:
        device = Device(
            token(identity),
            {"chunderw": url, "codec_preferences": [codec, other], "rtc_peer_connection": factory},
        )
        assert device.audio is not None
        for name in ("incoming", "outgoing", "disconnect"):
            getattr(device.audio, name)(False)
        return device

    devices: list[Device] = []
    up: list[Call] = []
    if role == "callee":
        for i in range(calls):
            device = new_device(f"loadcallee{i}")

            def on_incoming(call: Call) -> None:
                call.on("accept", up.append)
                call.accept()

            device.on("incoming", on_incoming)
            devices.append(device)
        await asyncio.gather(*(d.register() for d in devices))
        print(json.dumps({"registered": calls}), flush=True)
    else:
        for i in range(calls):
            device = new_device(f"loadcaller{i}")
            devices.append(device)
            call = await device.connect(params={"To": f"client:loadcallee{i}"})
            call.on("accept", up.append)
    while len(up) < calls:
        await asyncio.sleep(0.05)
    print(json.dumps({"up": len(up)}), flush=True)

    stdin_closed = asyncio.Event()
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def watch() -> None:
        await reader.read()
        stdin_closed.set()

    watcher = asyncio.ensure_future(watch())
    while not stdin_closed.is_set():
        await asyncio.sleep(1.0)
        received = sum(await asyncio.gather(*(pc.received() for pc in pcs)))
        lags = sorted(ticker.lags)
        ticker.lags.clear()
        report = {
            "t": loop.time(),
            "up": len(up),
            "sent": ticker.sent,
            "received": received,
            "lag_p99": lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
        }
        print(json.dumps(report), flush=True)
    watcher.cancel()
    for device in devices:
        await device.destroy()


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--role", choices=("caller", "callee"), required=True)
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--codec", choices=tuple(CODECS), default="opus")
    args = parser.parse_args()
    asyncio.run(_run(args.url, args.role, args.calls, args.codec))


if __name__ == "__main__":
    main()
