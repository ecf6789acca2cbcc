"""How much one client may ask of the gateway, and the frame-rate bucket that enforces it.

A gateway others can reach must not let one careless or hostile client cost
everybody else: every queue, timer and record it keeps for a client is bounded
here. The defaults leave ample room for any real SDK (ours or the JS one) and are
all configurable (:class:`~softphone.gateway.server.GatewayConfig` and the
``softphone gateway`` options). Pure: no I/O, time is passed in.
"""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class Limits:
    """Per-connection and per-account bounds (see each field)."""

    max_frame_bytes: int = 64 * 1024
    """Largest inbound frame; the socket is closed (1009) above it. SDPs are a few KiB."""
    max_frame_rate: float = 50.0
    """Sustained inbound frames per second per connection (heartbeat echoes included);
    0 turns the limit off."""
    frame_burst: int = 200
    """Frames a connection may send at once above the sustained rate (a reconnecting
    JS client flushes its queued frames in one go)."""
    send_queue_bytes: int = 1024 * 1024
    """Outbound frame text queued for one connection (counted in characters: frames are
    JSON, so about bytes) before it counts as unable to keep up and is dropped."""
    close_timeout_s: float = 3.0
    """How long a closing handshake may take before the socket is dropped."""
    listen_timeout_s: float = 30.0
    """A socket without a valid ``listen`` after this long is closed."""
    media_timeout_s: float = 15.0
    """An answered call whose media has not connected after this long is hung up
    (53405). Longer than any real setup, including ICE through TURN under load."""
    max_calls_per_connection: int = 8
    """Calls one connection may have placed and not yet ended."""
    max_calls_per_account: int = 500
    """Calls an account's clients may have placed and not yet ended, together."""
    max_call_records: int = 1000
    """Ended-call records kept (oldest dropped first)."""
    max_dtmf_digits: int = 256
    """Longest ``dtmf`` frame, and most digits waiting to be played to one leg."""
    max_recorded_digits: int = 256
    """Digits kept in one call's record (the count of the others is kept)."""
    max_id_length: int = 64
    """Longest ``callsid`` / ``voiceeventsid`` accepted from a client (ours are 34-39)."""

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(type(self)):
            if getattr(self, field.name) < 0:
                raise ValueError(f"limit {field.name} must not be negative")


class FrameBucket:
    """A token bucket over inbound frames: ``rate`` per second, ``burst`` at once."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self._tokens = self.burst
        self._last = now

    def allow(self, now: float) -> bool:
        """Take one frame at ``now``; False once the client is over its rate."""
        if self.rate <= 0:
            return True
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
