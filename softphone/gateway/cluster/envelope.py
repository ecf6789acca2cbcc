"""The frames gateways of one cluster send each other, and how call frames map to them.

A call from alice on gateway A to bob registered on gateway B has one *link*: on A,
the router sees bob's registration on B as one callee connection; on B, the router
sees A as the caller connection. Each side's router speaks to that stand-in as it
would to a client (server-to-client frames); :func:`leg_event` turns what it says into
a :class:`LegEvent` for the other gateway, whose :func:`client_frame` turns it back
into what a client would have sent there. So ringing, answer, reject, cancel,
hangup and user messages run through both routers unchanged; audio and RFC 4733
digits travel on a gateway-to-gateway media leg that the link's ``invite`` and
``answer`` negotiate.

A client that reconnects to gateway B while its leg lives on gateway A (its socket
landed on another worker or edge) is served by A through B: :class:`Attach` asks A to
re-attach the leg, and :class:`Relay` carries the client's frames to A and A's frames
back, verbatim (A's media path to the client is unchanged).

Pure: no I/O, JSON in and out.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import attrs

from softphone.signaling.codes import DECLINE
from softphone.signaling.messages import (
    Answer,
    CallMessage,
    Cancel,
    Hangup,
    Invite,
    Message,
    Reject,
)

VERSION = 1
EventKind = Literal["answer", "reject", "hangup", "message"]
EVENT_KINDS: frozenset[str] = frozenset({"answer", "reject", "hangup", "message"})


class EnvelopeError(ValueError):
    """A frame from another gateway that is not one of ours (logged and dropped)."""


@attrs.frozen(kw_only=True)
class Ring:
    """Gateway A asks gateway B to ring ``identity``'s devices there for a call.

    ``sdp`` is A's offer for the gateway-to-gateway media leg; ``parameters`` are the
    ``invite`` parameters bob's devices get (CallSid, From, To, Params…).
    """

    link: str
    sender: str
    """The id of the gateway that sent it (where the answer goes)."""
    account_sid: str
    identity: str
    sdp: str
    parameters: dict[str, Any]


@attrs.frozen(kw_only=True)
class LegEvent:
    """Something that happened on one side of a link, for the other side's router."""

    link: str
    sender: str
    kind: EventKind
    sdp: str | None = None
    """``answer``: the answering gateway's SDP for the media leg."""
    error: dict[str, Any] | None = None
    """``hangup``: why (the error the far router gave), if anything."""
    message: dict[str, Any] | None = None
    """``message``: content, contenttype, messagetype, voiceeventsid."""


@attrs.frozen(kw_only=True)
class Attach:
    """Gateway B to A: a client reconnected to B with a reconnect token for a leg of A.

    A checks ``token`` against the leg as for a reconnect on its own socket; the
    client's frames and A's replies then travel as :class:`Relay` on ``link``.
    """

    link: str
    sender: str
    callsid: str
    token: str
    account_sid: str
    identity: str
    hold_s: float
    """The client's reconnect window (from its ``listen`` on B)."""


@attrs.frozen(kw_only=True)
class Relay:
    """One signaling frame of a relayed client, as JSON text; None: its socket closed."""

    link: str
    sender: str
    frame: str | None = None


Envelope = Ring | LegEvent | Attach | Relay
_TYPES: dict[type, str] = {Ring: "ring", LegEvent: "event", Attach: "attach", Relay: "relay"}


def encode(envelope: Envelope) -> str:
    """The JSON text published on the other gateway's channel."""
    body: dict[str, Any] = {"v": VERSION, **attrs.asdict(envelope)}
    body["type"] = _TYPES[type(envelope)]
    return json.dumps({k: v for k, v in body.items() if v is not None}, separators=(",", ":"))


def decode(text: str | bytes) -> Envelope:
    """Parse a published frame; :class:`EnvelopeError` for anything else."""
    try:
        body = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("v") != VERSION:
        raise EnvelopeError("not a version 1 envelope")
    kind = body.pop("type", None)
    body.pop("v")
    try:
        if kind == "ring":
            ring = Ring(**body)
            if not all(
                isinstance(v, str)
                for v in (ring.link, ring.sender, ring.account_sid, ring.identity, ring.sdp)
            ) or not isinstance(ring.parameters, dict):
                raise EnvelopeError("ring: bad field types")
            return ring
        if kind == "event":
            event = LegEvent(**body)
            if event.kind not in EVENT_KINDS or not isinstance(event.link, str):
                raise EnvelopeError(f"unknown event {event.kind!r}")
            return event
        if kind == "attach":
            attach = Attach(**body)
            texts = (attach.link, attach.sender, attach.callsid, attach.token)
            if not all(isinstance(v, str) for v in (*texts, attach.account_sid, attach.identity)):
                raise EnvelopeError("attach: bad field types")
            if not isinstance(attach.hold_s, int | float):
                raise EnvelopeError("attach: bad hold_s")
            return attach
        if kind == "relay":
            relay = Relay(**body)
            if not isinstance(relay.link, str) or not isinstance(relay.frame, str | None):
                raise EnvelopeError("relay: bad field types")
            return relay
    except TypeError as exc:
        raise EnvelopeError(f"{kind}: {exc}") from None
    raise EnvelopeError(f"unknown envelope type {kind!r}")


def leg_event(link: str, sender: str, message: Message) -> LegEvent | None:
    """What a router's frame for the link's stand-in client means to the far gateway.

    None for frames only the stand-in would care about (``ringing``, acks, the
    answer without SDP a connected callee gets, errors about its own frames).
    A ``hangup`` carrying the decline error is the callee side's reject.
    """
    if isinstance(message, Answer):
        if message.sdp is None:
            return None
        return LegEvent(link=link, sender=sender, kind="answer", sdp=message.sdp)
    if isinstance(message, Cancel):
        return LegEvent(link=link, sender=sender, kind="hangup")
    if isinstance(message, Hangup):
        error = dict(message.error) if message.error else None
        if error is not None and error.get("code") == DECLINE:
            return LegEvent(link=link, sender=sender, kind="reject")
        return LegEvent(link=link, sender=sender, kind="hangup", error=error)
    if isinstance(message, CallMessage):
        return LegEvent(
            link=link,
            sender=sender,
            kind="message",
            message={
                "content": message.content,
                "contenttype": message.contenttype,
                "messagetype": message.messagetype,
                "voiceeventsid": message.voiceeventsid,
            },
        )
    return None


def client_frame(event: LegEvent, callsid: str) -> Message:
    """The frame a client would have sent on this side for ``event`` (about ``callsid``)."""
    if event.kind == "answer":
        return Answer(callsid=callsid, sdp=event.sdp or "")
    if event.kind == "reject":
        return Reject(callsid=callsid)
    if event.kind == "hangup":
        return Hangup(callsid=callsid, error=event.error)
    body = event.message or {}
    return CallMessage(
        callsid=callsid,
        content=body.get("content"),
        contenttype=body.get("contenttype"),
        messagetype=str(body.get("messagetype", "")),
        voiceeventsid=str(body.get("voiceeventsid", "")),
    )


def ring_of(link: str, sender: str, account_sid: str, identity: str, invite: Invite) -> Ring:
    """The :class:`Ring` for the ``invite`` a router sent to a remote callee."""
    return Ring(
        link=link,
        sender=sender,
        account_sid=account_sid,
        identity=identity,
        sdp=invite.sdp,
        parameters=dict(invite.parameters or {}),
    )


def is_final(event: LegEvent) -> bool:
    """The link is over once either side sends this."""
    return event.kind in ("reject", "hangup")
