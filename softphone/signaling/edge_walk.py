"""Which signaling URL to dial next: the JS WSTransport's fallback rules, sans I/O.

The transport reports what happened to each socket (opened, timed out, closed
with a code, went silent); this object decides the next URL. Rules, from the JS
SDK (transport-and-edges.md §3.3 and §3.6):

* the URL list is walked round-robin;
* the index advances on a connect timeout, on an abnormal close (1006/1015) of a
  socket that never opened, on a second consecutive abnormal close, and on an
  abnormal close after a heartbeat timeout;
* it does not advance on a clean close, nor on the first abnormal close of a
  socket that had been open (the same edge is retried once);
* a preferred URL (the edge a live call was set up on) wins while it is set.
"""

from __future__ import annotations

import enum

import attrs

ABNORMAL_CLOSE_CODES = frozenset({1006, 1015})


class SocketState(enum.Enum):
    """The transport's states, as in the JS WSTransport."""

    CLOSED = "closed"
    CONNECTING = "connecting"
    OPEN = "open"


@attrs.define
class EdgeWalk:
    """The URL list, the current index, the preferred URL and the fallback flag."""

    uris: list[str]
    index: int = 0
    preferred: str | None = None
    should_fallback: bool = False
    state: SocketState = SocketState.CLOSED
    previous_state: SocketState = SocketState.CLOSED

    def __attrs_post_init__(self) -> None:
        if not self.uris:
            raise ValueError("at least one signaling URL is needed")

    def target(self) -> str:
        """The URL the next connection attempt should use."""
        return self.preferred or self.uris[self.index]

    def primary_target(self) -> str:
        """The URL of the normal list at the current index (ignores the preferred one)."""
        return self.uris[self.index]

    def set_state(self, state: SocketState) -> None:
        """Record a state change, remembering the previous state (used by the rules)."""
        self.previous_state = self.state
        self.state = state

    def advance(self) -> None:
        """Move to the next URL, wrapping after the last."""
        self.index = (self.index + 1) % len(self.uris)

    def on_open(self) -> None:
        """A socket opened: clear the fallback flag."""
        self.should_fallback = False
        self.set_state(SocketState.OPEN)

    def on_connect_timeout(self) -> None:
        """The socket did not open in time: try the next URL."""
        self.advance()

    def on_heartbeat_timeout(self) -> None:
        """The server went silent: the next abnormal close moves on to another edge."""
        self.should_fallback = True

    def on_close(self, code: int) -> bool:
        """A socket closed with ``code``; returns True if it was abnormal (1006/1015)."""
        if code not in ABNORMAL_CLOSE_CODES:
            return False
        was_open = SocketState.OPEN in (self.state, self.previous_state)
        if self.should_fallback or not was_open:
            self.advance()
        self.should_fallback = True
        return True

    def update_uris(self, uris: list[str]) -> None:
        """Replace the list (edge options changed) and start from its first URL."""
        if not uris:
            raise ValueError("at least one signaling URL is needed")
        self.uris = list(uris)
        self.index = 0
