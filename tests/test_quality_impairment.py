"""Loss and delay injected between a caller and the gateway show up in its samples and warnings.

A UDP relay sits on the caller's media path (both ways); the caller calls the echo
app. While impaired, the samples must show the loss the relay really caused and the
delay it added, MOS must fall, and ``high-rtt`` / ``high-packet-loss`` must fire;
once the relay passes everything again, the warnings clear.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from recorders import EventLog, eventually

from benchmarks.udp_relay import UdpRelay, chain, fixed_delay, loss, pass_all
from softphone.audio_backends import ToneSource
from softphone.core.device import Device
from softphone.core.rtc_sample import RTCSample
from softphone.media.peer_connection import PeerConnection

DeviceFactory = Callable[..., Device]

LOSS_PERCENT = 10.0
ONE_WAY_DELAY_MS = 250.0


class RelayedPeerConnection(PeerConnection):
    """Our PeerConnection with its media to and from the gateway through ``relay``."""

    def __init__(self, relay: UdpRelay, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.relay = relay

    async def create_offer(self, source: Any) -> str:
        return self.relay.from_a(await super().create_offer(source))

    async def apply_answer(self, sdp: str) -> None:
        await super().apply_answer(self.relay.from_b(sdp))


async def test_injected_loss_and_delay_show_in_samples_and_warnings_then_clear(
    make_device: DeviceFactory,
) -> None:
    relay = UdpRelay()
    relay.a_to_b.policy = fixed_delay(ONE_WAY_DELAY_MS)
    relay.b_to_a.policy = chain(loss(LOSS_PERCENT, seed=3), fixed_delay(ONE_WAY_DELAY_MS))

    def relayed(config: Mapping[str, Any]) -> PeerConnection:
        return RelayedPeerConnection(relay, ice_servers=list(config.get("iceServers") or []))

    alice = make_device("alice", file_input_stream=ToneSource([440.0]), rtc_peer_connection=relayed)
    try:
        call = await alice.connect(params={"To": "echo"})
        log = EventLog(call, "accept", "sample", "warning", "warning-cleared")
        await log.wait_for("accept", timeout=20)
        rtp_at_accept, dropped_at_accept = relay.b_to_a.rtp, relay.b_to_a.rtp_dropped

        def raised() -> set[str]:
            return {name for name, *_ in log.args("warning")}

        # JS: rtt is judged once no sample in the 10-sample window lacks it
        await eventually(lambda: {"high-rtt", "high-packet-loss"} <= raised(), timeout=30)
        impaired: list[RTCSample] = [args[0] for args in log.args("sample")]
        sent = relay.b_to_a.rtp - rtp_at_accept
        dropped = relay.b_to_a.rtp_dropped - dropped_at_accept

        relay.a_to_b.policy = relay.b_to_a.policy = pass_all

        def cleared() -> set[str]:
            return {name for (name,) in log.args("warning-cleared")}

        # a warning clears once none of its window's 10 samples is bad, 5 s after it rose
        await eventually(lambda: {"high-rtt", "high-packet-loss"} <= cleared(), timeout=45)
        healthy = log.args("sample")[-1][0]
        call.disconnect()
    finally:
        relay.close()

    # loss: what the samples counted is what the relay dropped (within 1 point)
    counted = impaired[1:]  # the first sample's deltas start before the relay counters
    lost = sum(s.packets_lost for s in counted)
    received = sum(s.packets_received for s in counted)
    reported = 100.0 * lost / (lost + received)
    actual = 100.0 * dropped / sent
    assert abs(reported - actual) <= 1.0, (reported, actual, sent)
    # delay: the rtt from RTCP carries both ways of the relay's delay
    rtts = [s.rtt for s in counted[2:] if s.rtt is not None]
    assert rtts and min(rtts) >= 2 * ONE_WAY_DELAY_MS * 0.9, rtts
    assert max(rtts) <= 2 * ONE_WAY_DELAY_MS + 200, rtts
    # MOS: low while impaired, back to the top once the path is clean
    worst = min(s.mos for s in counted if s.mos is not None)
    assert worst < 3.5, worst
    assert healthy.mos is not None and healthy.mos > 4.3, healthy.to_dict()
