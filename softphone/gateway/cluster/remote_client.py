"""A call leg on another gateway, as this gateway's call router sees it.

It implements the router's :class:`~softphone.gateway.calls.CallClient`: the router
queues frames for it as for a Device, and :meth:`RemoteClient.send` turns them into
:class:`~softphone.gateway.cluster.envelope.LegEvent` (or, for the first ``invite``, a
:class:`~softphone.gateway.cluster.envelope.Ring`) handed to ``publish`` for the far
gateway. What the far gateway sends back is fed to the router as frames from this
client (the node does that, with :attr:`RemoteClient.callsid`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import attrs

from softphone.gateway.cluster import envelope
from softphone.gateway.cluster.link_sdp import only_codec
from softphone.gateway.tokens import VerifiedToken
from softphone.signaling.messages import Invite, Message

_ids = itertools.count(-(10**9), -1)
"""Negative, far from the REST API's own stand-ins, never a socket's id."""

Publish = Callable[[str, envelope.Envelope], None]
"""Queue an envelope for the gateway with that id."""


class StandIn:
    """What the router sees of a client on another gateway: who, and no token.

    Its ``id`` is negative (never a socket's); it never places calls through this
    router (no token); frames for it go to ``peer_gateway`` through ``publish``.
    """

    def __init__(
        self,
        *,
        link: str,
        own_gateway: str,
        peer_gateway: str,
        account_sid: str,
        identity: str,
        publish: Publish,
        reconnect_timeout_s: float = 0.0,
    ) -> None:
        self.id = next(_ids)
        self.link = link
        self.own_gateway = own_gateway
        self.peer_gateway = peer_gateway
        self._account_sid = account_sid
        self._identity = identity
        self._publish = publish
        self.closed = False
        """True once nothing more may go to the far gateway for it."""
        self.reconnect_timeout_s = reconnect_timeout_s
        """How long its calls are held when its far side goes away."""

    @property
    def token(self) -> VerifiedToken | None:
        """No token: a client of another gateway never places calls through this router."""
        return None

    @property
    def identity(self) -> str:
        """Whose leg it is."""
        return self._identity

    @property
    def account_sid(self) -> str:
        """The account of that identity."""
        return self._account_sid


class RemoteClient(StandIn):
    """One link's far side: the callee's gateway (on the caller's) or the caller's."""

    def __init__(
        self,
        *,
        link: str,
        own_gateway: str,
        peer_gateway: str,
        account_sid: str,
        identity: str,
        publish: Publish,
        callsid: str | None = None,
        codec: str | None = None,
    ) -> None:
        """``codec``: the only one the media offer the ``invite`` carries lists (the
        codec the caller's leg carries)."""
        super().__init__(
            link=link,
            own_gateway=own_gateway,
            peer_gateway=peer_gateway,
            account_sid=account_sid,
            identity=identity,
            publish=publish,
        )
        self.callsid = callsid
        """The id our router knows this leg by (frames from the far side carry it)."""
        self.codec = codec

    def send(self, message: Message) -> bool:
        """Pass the router's frame to the far gateway as a link event (or drop it)."""
        if self.closed:
            return False
        if isinstance(message, Invite):
            self.callsid = message.callsid
            if self.codec is not None:  # forwarded, not transcoded, on both gateways
                message = attrs.evolve(message, sdp=only_codec(message.sdp, self.codec))
            ring = envelope.ring_of(
                self.link, self.own_gateway, self._account_sid, self._identity, message
            )
            self._publish(self.peer_gateway, ring)
            return True
        event = envelope.leg_event(self.link, self.own_gateway, message)
        if event is None:
            return True
        if envelope.is_final(event):
            self.closed = True
        self._publish(self.peer_gateway, event)
        return True

    def __repr__(self) -> str:
        return f"<RemoteClient {self.link} {self._identity!r} on {self.peer_gateway}>"
