"""When is a call's media lost, and when is it back? Sans-I/O, fed packet counts and time.

aioice needs about 30 s (consent freshness) to declare a dead path, and aiortc has
no ``disconnected`` state, so the SDK watches its own inbound RTP instead: the
far end always sends (mute sends silence), so no packet for ``lost_after_s``
seconds means the path is gone. The Call feeds :meth:`MediaHealth.update` once
per tick and acts on what it returns.
"""

from __future__ import annotations

import enum

import attrs

LOST_AFTER_S = 2.5
"""No inbound RTP for this long means the media path is lost (JS: ~3 low-bytes samples)."""

GIVE_UP_AFTER_S = 30.0
"""A reconnection that has not succeeded this long after it began is fatal (JS: 30 s)."""


class HealthEvent(enum.Enum):
    """What changed since the last update."""

    LOST = "lost"
    RECOVERED = "recovered"
    GIVE_UP = "give-up"


@attrs.define
class MediaHealth:
    """Tracks inbound RTP progress of one call."""

    lost_after_s: float = LOST_AFTER_S
    give_up_after_s: float = GIVE_UP_AFTER_S
    last_count: int = -1
    last_progress: float | None = None
    lost_since: float | None = None
    gave_up: bool = False

    @property
    def is_lost(self) -> bool:
        """True between a LOST event and the next RECOVERED."""
        return self.lost_since is not None

    def update(self, now: float, packets_received: int) -> HealthEvent | None:
        """Feed the current inbound packet counter; returns a state change, if any."""
        if self.gave_up:
            return None
        if self.last_progress is None or packets_received > self.last_count:
            progressed = self.last_progress is not None and packets_received > self.last_count
            self.last_count = packets_received
            self.last_progress = now
            if progressed and self.lost_since is not None:
                self.lost_since = None
                return HealthEvent.RECOVERED
            return None
        if self.lost_since is None:
            if now - self.last_progress >= self.lost_after_s:
                self.lost_since = now
                return HealthEvent.LOST
            return None
        if now - self.lost_since >= self.give_up_after_s:
            self.gave_up = True
            return HealthEvent.GIVE_UP
        return None

    def reset(self) -> None:
        """Forget history (a new media session started)."""
        self.last_count = -1
        self.last_progress = None
        self.lost_since = None
        self.gave_up = False
