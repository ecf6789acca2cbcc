"""Stand-ins for what the gateway's :class:`~softphone.gateway.calls.CallRouter` talks to.

The router's rules (who rings, who gets ``cancel``, which code ends a call) need no
socket and no media: :class:`FakeConnection` records the typed frames the router
queues for one client, :class:`FakeLegMedia` makes :class:`FakePeerConnection` legs
that answer with canned SDP (one host candidate) and connect only when a test says
so, and :class:`FakeBridges` records which legs the router joined.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TypeVar

import attrs

from softphone.gateway.tokens import VerifiedToken
from softphone.media.ice_gathering import GatheringReport
from softphone.signaling.messages import Message

M = TypeVar("M", bound=Message)

_ids = itertools.count(1)
_sdp_serial = itertools.count(1)

FAR_FUTURE = 4_000_000_000.0
"""``exp`` of the fake tokens (2096): the router never checks expiry itself."""


def canned_sdp(kind: str) -> str:
    """A small audio SDP with one host candidate; ``kind`` and a serial tell them apart."""
    serial = next(_sdp_serial)
    return (
        "v=0\r\n"
        f"o=- {serial} 1 IN IP4 127.0.0.1\r\n"
        f"s=fake-{kind}\r\n"
        "t=0 0\r\n"
        "m=audio 40000 UDP/TLS/RTP/SAVPF 111 0 101\r\n"
        "c=IN IP4 127.0.0.1\r\n"
        "a=rtpmap:111 opus/48000/2\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
        "a=end-of-candidates\r\n"
    )


def token(
    identity: str,
    account_sid: str,
    *,
    application_sid: str | None = None,
    incoming: bool = True,
) -> VerifiedToken:
    """A token as :func:`~softphone.gateway.tokens.verify_token` would have accepted it."""
    return VerifiedToken(
        identity=identity,
        account_sid=account_sid,
        key_sid="SK" + "0" * 32,
        expires_at=FAR_FUTURE,
        incoming_allow=incoming,
        outgoing_application_sid=application_sid,
    )


class FakeConnection:
    """A client connection that records, in order, every message queued for it."""

    def __init__(self, token: VerifiedToken | None, *, reconnect_timeout_s: float = 0) -> None:
        self.id = next(_ids)
        self.token = token
        self.reconnect_timeout_s = reconnect_timeout_s
        self.closed = False
        """Set by a test once the socket is gone: sends then return False, like the real one."""
        self.sent: list[Message] = []

    @property
    def identity(self) -> str | None:
        return self.token.identity if self.token else None

    @property
    def account_sid(self) -> str | None:
        return self.token.account_sid if self.token else None

    def send(self, message: Message) -> bool:
        if self.closed:
            return False
        self.sent.append(message)
        return True

    def of(self, kind: type[M]) -> list[M]:
        """The sent messages of one type, oldest first."""
        return [m for m in self.sent if isinstance(m, kind)]

    def only(self, kind: type[M]) -> M:
        """The single sent message of that type (fails if there are none or several)."""
        found = self.of(kind)
        assert len(found) == 1, f"expected one {kind.__name__}, got {self.sent}"
        return found[0]

    def types(self) -> list[str]:
        """The wire type of each sent message, oldest first."""
        return [m.TYPE for m in self.sent]

    def __hash__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"<FakeConnection {self.id} identity={self.identity!r}>"


class FakePeerConnection:
    """One leg's media as the router uses it; nothing is sent anywhere.

    ``fail`` names methods that raise ``ValueError`` (a bad SDP); ``gathers_nothing``
    makes gathering end without a candidate, as a leg bound to a dead address does.
    """

    def __init__(self, *, fail: frozenset[str] = frozenset(), gathers_nothing: bool = False):
        self.fail = fail
        self.gathers_nothing = gathers_nothing
        self.calls: list[tuple[str, str | None]] = []
        """(method, SDP or digits given) for every method the router awaited."""
        self.played: list[str] = []
        """Digit runs sent as RFC 4733 events, in order."""
        self.on_dtmf: Callable[[str], None] | None = None
        self.on_connection_state_change: Callable[[str], None] | None = None
        self.connection_state = "new"
        self.can_insert_dtmf = True
        self.ice_gathering: GatheringReport | None = None
        self.local_sdp: str | None = None
        self.remote_sdp: str | None = None
        self.closed = False

    def _step(self, name: str, given: str | None) -> None:
        self.calls.append((name, given))
        if name in self.fail:
            raise ValueError(f"fake {name} refused the SDP")

    def _gather(self, kind: str) -> str:
        types = [] if self.gathers_nothing else ["host"]
        self.ice_gathering = GatheringReport(candidate_types=types, done=True)
        self.local_sdp = canned_sdp(kind)
        return self.local_sdp

    async def create_offer(self, source: object | None) -> str:
        self._step("create_offer", None)
        return self._gather("offer")

    async def create_answer(self, offer_sdp: str, source: object | None) -> str:
        self._step("create_answer", offer_sdp)
        self.remote_sdp = offer_sdp
        return self._gather("answer")

    async def apply_answer(self, sdp: str) -> None:
        self._step("apply_answer", sdp)
        self.remote_sdp = sdp

    async def answer_ice_restart(self, offer_sdp: str) -> str:
        self._step("answer_ice_restart", offer_sdp)
        return self._gather("restart-answer")

    async def insert_dtmf(self, tones: str) -> None:
        self._step("insert_dtmf", tones)
        self.played.append(tones)

    async def close(self) -> None:
        self.calls.append(("close", None))
        self.closed = True
        self.connection_state = "closed"

    # -- what the network would do -------------------------------------------------------
    def connect(self) -> None:
        """ICE and DTLS succeeded: report ``connected`` as the real one does."""
        self.connection_state = "connected"
        if self.on_connection_state_change is not None:
            self.on_connection_state_change("connected")

    def receive_dtmf(self, digit: str) -> None:
        """An RFC 4733 digit arrived from this leg's client."""
        assert self.on_dtmf is not None, "the router did not listen for digits on this leg"
        self.on_dtmf(digit)

    def method_names(self) -> list[str]:
        return [name for name, _ in self.calls]


class FakeLegMedia:
    """The router's leg-media factory: a new :class:`FakePeerConnection` per leg."""

    def __init__(self) -> None:
        self.made: list[FakePeerConnection] = []
        self.fail: frozenset[str] = frozenset()
        """Methods the next legs refuse (set by a test before the call)."""
        self.gathers_nothing = False

    def __call__(self) -> FakePeerConnection:
        pc = FakePeerConnection(fail=self.fail, gathers_nothing=self.gathers_nothing)
        self.made.append(pc)
        return pc

    def connect_all(self) -> None:
        """Every leg made so far and still open connects."""
        for pc in self.made:
            if not pc.closed:
                pc.connect()


@attrs.define(eq=False)
class FakeBridge:
    """What the router got back for one answered call's media."""

    legs: tuple[FakePeerConnection, ...]
    closed: bool = False

    def close(self) -> None:
        self.closed = True


@attrs.define
class FakeBridges:
    """The router's ``bridge`` and ``echo`` factories, recording what they joined."""

    made: list[FakeBridge] = attrs.field(factory=list)

    def bridge(self, a: FakePeerConnection, b: FakePeerConnection) -> FakeBridge:
        made = FakeBridge((a, b))
        self.made.append(made)
        return made

    def echo(self, pc: FakePeerConnection) -> FakeBridge:
        made = FakeBridge((pc,))
        self.made.append(made)
        return made
