"""Call quality: what the samples report for injected loss and delay, and what watching costs.

For each case a caller calls the echo app of an in-process gateway through the UDP
relay of :mod:`benchmarks.udp_relay`, which drops a given share of the RTP coming
back to the caller and delays every datagram by a given time each way. After
``seconds`` of call the table gives, from the caller's own ``sample`` events (the
last 8, once rtt is known): the loss the relay really caused and the loss the
samples counted, rtt, jitter, MOS (mean and minimum) and the warnings raised.

The second part times the per-call quality work the SDK adds in this process: one
:class:`~softphone.core.call_quality.CallQuality` step a second and the volume meter
(two 20 ms blocks pushed every 20 ms, read every 50 ms), as CPU per call-second.

``python -m benchmarks.monitor [--quick]``; :func:`run` returns the report lines.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from benchmarks.udp_relay import UdpRelay, chain, fixed_delay, loss
from softphone.audio_backends import ToneSource
from softphone.core.call_quality import CallQuality
from softphone.core.call_volume import CallVolume
from softphone.core.device import Device
from softphone.core.rtc_sample import RTCSample
from softphone.gateway.accounts import DEV_APPLICATION_SID, AccountStore
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tokens import mint_token
from softphone.media.aiortc_hooks import use_host_addresses
from softphone.media.peer_connection import PeerConnection

CASES: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (1.0, 0.0),
    (3.0, 0.0),
    (5.0, 0.0),
    (10.0, 0.0),
    (0.0, 50.0),
    (0.0, 150.0),
    (0.0, 250.0),
    (5.0, 150.0),
)
"""(loss % on the way back to the caller, one-way delay ms both ways)."""
QUICK_CASES = ((0.0, 0.0), (5.0, 0.0), (0.0, 250.0))


class _RelayedPeerConnection(PeerConnection):
    def __init__(self, relay: UdpRelay, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.relay = relay

    async def create_offer(self, source: Any) -> str:
        return self.relay.from_a(await super().create_offer(source))

    async def apply_answer(self, sdp: str) -> None:
        await super().apply_answer(self.relay.from_b(sdp))


async def impaired_call(
    gateway: Gateway, accounts: AccountStore, loss_pct: float, delay_ms: float, seconds: float
) -> str:
    """One call through the relay; its table row."""
    relay = UdpRelay()
    back = [loss(loss_pct, seed=11)] if loss_pct else []
    if delay_ms:
        relay.a_to_b.policy = fixed_delay(delay_ms)
        back.append(fixed_delay(delay_ms))
    if back:
        relay.b_to_a.policy = chain(*back)

    def relayed(config: Mapping[str, Any]) -> PeerConnection:
        return _RelayedPeerConnection(relay, ice_servers=[])

    token = mint_token(
        accounts.default_key(), "bench", outgoing_application_sid=DEV_APPLICATION_SID
    )
    device = Device(
        token,
        chunderw=gateway.url,
        file_input_stream=ToneSource([440.0]),
        rtc_peer_connection=relayed,
        rtc_configuration={"iceServers": []},
    )
    samples: list[RTCSample] = []
    warnings: list[str] = []
    try:
        call = await device.connect(params={"To": "echo"})
        call.on("sample", samples.append)
        call.on("warning", lambda name, *_: warnings.append(name))
        await asyncio.wait_for(call.wait_for("accept"), 20)
        rtp0, dropped0 = relay.b_to_a.rtp, relay.b_to_a.rtp_dropped
        await asyncio.sleep(seconds)  # the measurement window
        rtp, dropped = relay.b_to_a.rtp - rtp0, relay.b_to_a.rtp_dropped - dropped0
        call.disconnect()
    finally:
        await device.destroy()
        relay.close()
    window = [s for s in samples if s.rtt is not None][-8:]
    lost = sum(s.packets_lost for s in window)
    received = sum(s.packets_received for s in window)
    counted = 100.0 * lost / max(lost + received, 1)
    actual = 100.0 * dropped / max(rtp, 1)
    mos = [s.mos for s in window if s.mos is not None]
    rtt = statistics.mean(s.rtt for s in window if s.rtt is not None) if window else float("nan")
    jitter = statistics.mean(s.jitter for s in window) if window else float("nan")
    raised = ",".join(sorted(set(warnings))) or "-"
    return (
        f"{loss_pct:5.1f} {delay_ms:6.0f} | {actual:6.2f} {counted:7.2f} {rtt:7.1f} "
        f"{jitter:6.2f} {statistics.mean(mos) if mos else float('nan'):5.2f} "
        f"{min(mos) if mos else float('nan'):5.2f} | {raised}"
    )


def monitor_cpu(call_seconds: int) -> str:
    """CPU per call-second of the quality work a Call does in this process."""
    quality = CallQuality(created_at=0.0)
    volume = CallVolume()
    block = ToneSource([440.0]).read(960)
    started = time.process_time()
    for second in range(1, call_seconds + 1):
        for _ in range(50):  # a second of 20 ms blocks each way
            volume.push_input(block)
            volume.push_output(block)
        for _ in range(20):  # read every 50 ms
            reading = volume.read()
            quality.add_volume(reading.input_level, reading.output_level)
        snapshot = {
            "timestamp": 1000.0 * second,
            "codecName": "opus",
            "packetsSent": 50 * second,
            "bytesSent": 4000 * second,
            "packetsReceived": 50 * second,
            "bytesReceived": 4000 * second,
            "packetsLost": second // 3,
            "jitter": 0.002,
            "rtt": 0.04,
        }
        quality.process(snapshot, float(second), muted=False)
    used = time.process_time() - started
    return (
        f"quality watch: {1000 * used / call_seconds:.2f} ms CPU per call-second "
        f"({100 * used / call_seconds:.2f} % of a core per call; {call_seconds} call-seconds)"
    )


async def run(quick: bool = False, progress: Callable[[str], None] = print) -> list[str]:
    """The impairment table and the monitor's CPU cost, as report lines."""
    use_host_addresses(["127.0.0.1"])
    accounts = AccountStore.dev()
    gateway = await Gateway(accounts, GatewayConfig(port=0)).start()
    lines = [
        "loss%  delay |  relay% sample%  rtt ms jit ms  MOS  minMOS | warnings raised",
    ]
    seconds = 10.0 if quick else 14.0
    try:
        for loss_pct, delay_ms in QUICK_CASES if quick else CASES:
            progress(f"  call with {loss_pct:g} % loss, {delay_ms:g} ms each way ({seconds:g} s)")
            lines.append(await impaired_call(gateway, accounts, loss_pct, delay_ms, seconds))
    finally:
        await gateway.stop()
    lines.append(monitor_cpu(60 if quick else 600))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three cases, shorter calls")
    args = parser.parse_args()
    for line in asyncio.run(run(args.quick, lambda text: print(text, file=sys.stderr))):
        print(line)


if __name__ == "__main__":
    main()
