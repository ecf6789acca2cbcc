"""A peer that answers an ICE restart with another DTLS certificate gets a new DTLS session.

That is what a gateway taking over a call from a gateway that died does (it has none
of the old session's keys); browsers restart DTLS when the remote fingerprint changes
and our :class:`PeerConnection` does the same (``aiortc_hooks.restart_dtls``). Real
aiortc peer connections on 127.0.0.1: alice talks with bob, bob's peer connection is
abandoned (as if his process died), a fresh one (carol) answers alice's ICE-restart
offer, and audio flows between alice and carol both ways.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from softphone.audio_backends import MemorySink, ToneSource
from softphone.audio_backends.analysis import dominant_frequency
from softphone.audio_backends.base import SAMPLE_RATE
from softphone.media.peer_connection import PeerConnection
from softphone.media.sdp import new_dtls_session

ALICE_HZ, BOB_HZ, CAROL_HZ = 1000.0, 1500.0, 2000.0


@pytest.fixture
async def peers(loopback_media: None) -> AsyncIterator[list[PeerConnection]]:
    made: list[PeerConnection] = []
    yield made
    for pc in made:
        await pc.close()


def _peer(made: list[PeerConnection]) -> tuple[PeerConnection, MemorySink]:
    pc = PeerConnection(ice_servers=[])
    heard = MemorySink()
    pc.set_remote_sink(heard)
    made.append(pc)
    return pc, heard


async def _hears(sink: MemorySink, hz: float, within_s: float = 15.0) -> None:
    """Fresh audio in ``sink`` is ``hz`` (written after this call started)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    start = sink.samples_written
    need = int(0.4 * SAMPLE_RATE)
    while True:
        if sink.samples_written - start >= need:
            pcm = sink.pcm()[-need:]
            if abs(pcm).max() > 1000 and abs(dominant_frequency(pcm) - hz) < 30:
                return
            start = sink.samples_written
        assert loop.time() < deadline, f"never heard {hz:g} Hz"
        await asyncio.sleep(0.05)


async def test_an_ice_restart_answered_with_a_new_certificate_restarts_dtls(
    peers: list[PeerConnection],
) -> None:
    alice, alice_heard = _peer(peers)
    bob, _ = _peer(peers)
    offer = await alice.create_offer(ToneSource([ALICE_HZ]))
    answer = await bob.create_answer(offer, ToneSource([BOB_HZ]))
    await alice.apply_answer(answer)
    await _hears(alice_heard, BOB_HZ)

    # carol, a fresh peer connection (a new certificate, none of bob's keys), takes
    # bob's place; bob is left as it is (a peer that died sends no DTLS close either)
    carol, carol_heard = _peer(peers)
    restart = await alice.restart_ice_offer()
    carol_answer = await carol.create_answer(restart, ToneSource([CAROL_HZ]))
    assert new_dtls_session(answer, carol_answer)
    await alice.apply_ice_restart_answer(carol_answer)

    await _hears(alice_heard, CAROL_HZ)
    await _hears(carol_heard, ALICE_HZ)
    assert alice.connection_state == "connected"


async def test_a_plain_ice_restart_keeps_the_dtls_session(peers: list[PeerConnection]) -> None:
    alice, alice_heard = _peer(peers)
    bob, bob_heard = _peer(peers)
    offer = await alice.create_offer(ToneSource([ALICE_HZ]))
    await alice.apply_answer(await bob.create_answer(offer, ToneSource([BOB_HZ])))
    await _hears(alice_heard, BOB_HZ)
    keys = alice.rtc_peer_connection.getTransceivers()[0].receiver.transport._rx_srtp

    restart = await alice.restart_ice_offer()
    await alice.apply_ice_restart_answer(await bob.answer_ice_restart(restart))
    await _hears(alice_heard, BOB_HZ)
    await _hears(bob_heard, ALICE_HZ)
    same = alice.rtc_peer_connection.getTransceivers()[0].receiver.transport._rx_srtp
    assert same is keys  # same certificate: no new handshake, the same SRTP session
