"""``send_digits`` with ``w`` pauses, checked at the far end of a real gateway call.

A ``w`` is a 500 ms pause *after* the digits before it: every digit must arrive,
in order, and each ``w`` must open a gap of roughly half a second between the
digits around it (asserted as >= 400 ms: a protocol pause, not a speed limit).
Both paths are covered: RFC 4733 from the caller, and the signaling ``dtmf``
frame, which the gateway paces itself.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from calltools import Listener, open_call
from recorders import eventually

from softphone.core.call import Call
from softphone.core.device import Device
from softphone.gateway.server import Gateway
from softphone.media.peer_connection import PeerConnection

DeviceFactory = Callable[..., Device]
PAUSE_AT_LEAST_S = 0.4

PATHS = pytest.mark.parametrize("rfc4733", [True, False], ids=["rfc4733", "signaling-dtmf"])


class Arrivals:
    """The far end's ``dtmf`` events with the loop time each arrived at."""

    def __init__(self, call: Call) -> None:
        self.digits: list[tuple[str, float]] = []
        self._loop = asyncio.get_running_loop()
        call.on("dtmf", lambda digit: self.digits.append((digit, self._loop.time())))

    def text(self) -> str:
        return "".join(digit for digit, _ in self.digits)

    async def wait(self, count: int, timeout: float = 10.0) -> None:
        await eventually(lambda: len(self.digits) >= count, timeout=timeout)

    def gaps(self) -> list[float]:
        """Seconds between each digit and the one before it."""
        times = [at for _, at in self.digits]
        return [later - earlier for earlier, later in itertools.pairwise(times)]


async def _open(make_device: DeviceFactory, rfc4733: bool) -> tuple[Call, Arrivals]:
    options: dict[str, Any] = {}
    if not rfc4733:  # a media stack without telephone-event: the `dtmf` frame is used
        options["rtc_peer_connection"] = lambda config: PeerConnection(ice_servers=[], dtmf=False)
    alice = make_device("alice", **options)
    bob = Listener(make_device("bob"))
    await bob.device.register()
    call, bob_call = await open_call(alice, bob)
    assert call.peer_connection is not None
    assert call.peer_connection.can_insert_dtmf is rfc4733
    return call, Arrivals(bob_call)


def _pause_positions(digits: str) -> dict[int, int]:
    """Gap index (gap i lies between digit i and i+1) -> how many ``w`` lie in it."""
    total = len(digits.replace("w", ""))
    positions: dict[int, int] = {}
    seen = 0
    for char in digits:
        if char != "w":
            seen += 1
        elif 0 < seen < total:
            positions[seen - 1] = positions.get(seen - 1, 0) + 1
    return positions


def _assert_paced(arrivals: Arrivals, sent: str) -> None:
    expected = sent.replace("w", "")
    assert arrivals.text() == expected
    gaps = arrivals.gaps()
    for position, pauses in _pause_positions(sent).items():
        assert gaps[position] >= pauses * PAUSE_AT_LEAST_S, (sent, position, gaps)


@PATHS
@pytest.mark.parametrize(
    "digits",
    ["123w4", "1234w5", "12345678w9", "1w2w3", "12ww3", "w12w3", "12w3w"],
)
async def test_every_digit_arrives_in_order_with_its_pauses(
    make_device: DeviceFactory, gateway: Gateway, rfc4733: bool, digits: str
) -> None:
    call, arrivals = await _open(make_device, rfc4733)
    call.send_digits(digits)
    expected = digits.replace("w", "")
    await arrivals.wait(len(expected))
    await asyncio.sleep(0.3)  # nothing more may trickle in
    _assert_paced(arrivals, digits)
    call.disconnect()
    await eventually(lambda: gateway.calls.records != [])
    assert gateway.calls.records[-1]["digits"] == expected


@PATHS
async def test_two_send_digits_calls_do_not_interleave(
    make_device: DeviceFactory, gateway: Gateway, rfc4733: bool
) -> None:
    call, arrivals = await _open(make_device, rfc4733)
    call.send_digits("123w")
    call.send_digits("456")
    await arrivals.wait(6)
    await asyncio.sleep(0.3)
    _assert_paced(arrivals, "123w456")
    call.disconnect()


async def test_a_leading_w_delays_the_first_digit(
    make_device: DeviceFactory, gateway: Gateway
) -> None:
    call, arrivals = await _open(make_device, True)
    loop = asyncio.get_running_loop()
    sent_at = loop.time()
    call.send_digits("ww1")
    await arrivals.wait(1)
    assert arrivals.text() == "1"
    assert arrivals.digits[0][1] - sent_at >= 2 * PAUSE_AT_LEAST_S
    call.disconnect()


def test_pause_positions_follow_the_digits_before_each_w() -> None:
    assert _pause_positions("123w4") == {2: 1}
    assert _pause_positions("1w2w3") == {0: 1, 1: 1}
    assert _pause_positions("12ww3") == {1: 2}
    assert _pause_positions("w12w3") == {1: 1}
    assert _pause_positions("12w3w") == {1: 1}
