"""A client connected to another gateway whose call leg lives on this one.

When a client's socket lands on gateway B while its leg is on gateway A (a reconnect
through an address several workers or edges share), B relays its frames to A and A
speaks to it through a :class:`RelayedClient`: the router treats it like the client's
own socket, and every frame it sends goes to B as a
:class:`~softphone.gateway.cluster.envelope.Relay`, which B hands to the real socket.
The client's media path to A does not change.
"""

from __future__ import annotations

from softphone.gateway.cluster import envelope
from softphone.gateway.cluster.remote_client import StandIn
from softphone.signaling.messages import Message, encode


class RelayedClient(StandIn):
    """The client of the far gateway ``peer_gateway``, relaying on ``link``.

    Its ``reconnect_timeout_s`` is the window the client announced on the far gateway.
    """

    def send(self, message: Message) -> bool:
        """Pass the frame to the far gateway for the client's socket."""
        if self.closed:
            return False
        frame = envelope.Relay(link=self.link, sender=self.own_gateway, frame=encode(message))
        self._publish(self.peer_gateway, frame)
        return True

    def __repr__(self) -> str:
        return f"<RelayedClient {self.link} {self.identity!r} on {self.peer_gateway}>"
