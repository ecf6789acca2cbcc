"""What a preflight test reads off a call's peer connection: state timings and ICE candidates.

Two read-only views of a :class:`~softphone.media.peer_connection.PeerConnection`
(or any adapter exposing aiortc's ``RTCPeerConnection`` as ``rtc_peer_connection``):

* :class:`StateWatch` reports every peer-connection, ICE, DTLS and signaling state
  change under the names the JS SDK's media handler uses (``peerConnection``,
  ``ice``, ``dtls``, ``signaling``), with aiortc's ICE ``completed`` reported as
  ``connected`` (aiortc never says ``connected`` for ICE);
* :func:`ice_candidate_stats_report` gives the JS ``RTCIceCandidateStatsReport``:
  every local and remote candidate as an ``RTCIceCandidateStats`` dict, and the
  selected pair's two candidates. :func:`candidate_stats_report` is its pure part.

An adapter without ``rtc_peer_connection`` (a plugin's own media) is simply not
watched: no timings and no candidate report, never an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "IceCandidateStatsReport",
    "StateWatch",
    "candidate_stats",
    "candidate_stats_report",
    "candidates",
    "ice_candidate_stats_report",
]

log = logging.getLogger("softphone.media.pc_diagnostics")

TRANSPORT_ID = "T01"
"""The ``transportId`` of every candidate: one bundled audio transport per call."""


class StateWatch:
    """Calls ``on_state(kind, state)`` on each state change of ``pc``'s connection.

    ``kind`` is ``peerConnection`` (aiortc ``connectionState``), ``ice``
    (``iceConnectionState``, ``completed`` reported as ``connected``), ``dtls`` (the
    DTLS transport's ``state``, watched from the moment the transport exists) or
    ``signaling`` (``signalingState``). :meth:`close` stops watching.
    """

    def __init__(self, pc: object, on_state: Callable[[str, str], None]) -> None:
        self._rtc: Any = getattr(pc, "rtc_peer_connection", None)
        self._on_state = on_state
        self._dtls: dict[int, tuple[Any, Callable[[], None]]] = {}
        self._handlers: list[tuple[str, Callable[[], None]]] = [
            ("connectionstatechange", self._on_connection),
            ("iceconnectionstatechange", self._on_ice),
            ("signalingstatechange", self._on_signaling),
        ]
        if self._rtc is None:
            self._handlers = []
            return
        for event, handler in self._handlers:
            self._rtc.on(event, handler)

    @property
    def watching(self) -> bool:
        """False for an adapter that exposes no aiortc connection."""
        return self._rtc is not None

    def _report(self, kind: str, state: str) -> None:
        try:
            self._on_state(kind, state)
        except Exception:
            log.exception("state listener failed on %s %s", kind, state)

    def _on_connection(self) -> None:
        self._watch_dtls()
        self._report("peerConnection", str(self._rtc.connectionState))

    def _on_ice(self) -> None:
        self._watch_dtls()
        state = str(self._rtc.iceConnectionState)
        self._report("ice", "connected" if state == "completed" else state)

    def _on_signaling(self) -> None:
        self._watch_dtls()
        self._report("signaling", str(self._rtc.signalingState))

    def _watch_dtls(self) -> None:
        """Subscribe to DTLS transports that appeared since the last state change.

        They exist from the first local description on; DTLS itself starts only
        after ICE connects, so none of its states is missed.
        """
        for transceiver in self._rtc.getTransceivers():
            dtls = getattr(transceiver.receiver, "transport", None)
            if dtls is None or id(dtls) in self._dtls:
                continue

            def changed(dtls: Any = dtls) -> None:
                self._report("dtls", str(dtls.state))

            dtls.on("statechange", changed)
            self._dtls[id(dtls)] = (dtls, changed)
            if dtls.state != "new":
                changed()

    def close(self) -> None:
        """Stop reporting (idempotent)."""
        if self._rtc is not None:
            for event, handler in self._handlers:
                self._rtc.remove_listener(event, handler)
        for dtls, handler in self._dtls.values():
            dtls.remove_listener("statechange", handler)
        self._handlers = []
        self._dtls.clear()


@attrs.frozen
class IceCandidateStatsReport:
    """JS ``RTCIceCandidateStatsReport``: all candidates, and the selected pair's two."""

    ice_candidate_stats: list[dict[str, Any]]
    """Every local then every remote candidate, as ``RTCIceCandidateStats`` dicts."""
    selected_ice_candidate_pair_stats: dict[str, dict[str, Any]] | None
    """``{"localCandidate": ..., "remoteCandidate": ...}``; None before a pair is selected."""


def candidate_stats(
    candidate: Any, *, remote: bool, index: int, relay_protocol: str | None = None
) -> dict[str, Any]:
    """The ``RTCIceCandidateStats`` dict of an aiortc ``RTCIceCandidate``.

    ``relay_protocol`` (``udp``/``tcp``/``tls``) is how a local relay candidate
    reaches its TURN server, when known; browsers report it for local relay
    candidates only.
    """
    stats: dict[str, Any] = {
        "id": f"{'R' if remote else 'L'}{index}",
        "type": "remote-candidate" if remote else "local-candidate",
        "transportId": TRANSPORT_ID,
        "isRemote": remote,
        "address": candidate.ip,
        "ip": candidate.ip,
        "port": candidate.port,
        "protocol": str(candidate.protocol).lower(),
        "candidateType": candidate.type,
        "priority": candidate.priority,
        "foundation": candidate.foundation,
        "deleted": False,
    }
    if candidate.relatedAddress is not None:
        stats["relatedAddress"] = candidate.relatedAddress
        stats["relatedPort"] = candidate.relatedPort
    if relay_protocol is not None and not remote and candidate.type == "relay":
        stats["relayProtocol"] = relay_protocol
    return stats


def candidate_stats_report(
    local: Sequence[Any], remote: Sequence[Any], pair: Mapping[str, Any] | None
) -> IceCandidateStatsReport:
    """The report for these aiortc candidates and the selected pair (the flat dict of
    ``PeerConnection.get_stats()["selectedCandidatePair"]``, or None).

    A selected candidate missing from the lists (a peer-reflexive one learnt during
    the checks) is described from the pair itself.
    """
    relay_protocol = pair.get("relayProtocol") if pair else None
    local_stats = [
        candidate_stats(c, remote=False, index=i, relay_protocol=relay_protocol)
        for i, c in enumerate(local)
    ]
    remote_stats = [candidate_stats(c, remote=True, index=i) for i, c in enumerate(remote)]
    selected = None
    if pair:
        selected = {
            "localCandidate": _find(local_stats, pair, "local")
            or _from_pair(pair, "local", relay_protocol),
            "remoteCandidate": _find(remote_stats, pair, "remote")
            or _from_pair(pair, "remote", None),
        }
    return IceCandidateStatsReport(local_stats + remote_stats, selected)


def _find(stats: list[dict[str, Any]], pair: Mapping[str, Any], side: str) -> dict[str, Any] | None:
    key = (pair.get(f"{side}Address"), pair.get(f"{side}Port"), pair.get(f"{side}CandidateType"))
    for entry in stats:
        if (entry["address"], entry["port"], entry["candidateType"]) == key:
            return entry
    return None


def _from_pair(pair: Mapping[str, Any], side: str, relay_protocol: str | None) -> dict[str, Any]:
    remote = side == "remote"
    stats: dict[str, Any] = {
        "id": f"{'R' if remote else 'L'}-selected",
        "type": f"{side}-candidate",
        "transportId": TRANSPORT_ID,
        "isRemote": remote,
        "address": pair.get(f"{side}Address"),
        "ip": pair.get(f"{side}Address"),
        "port": pair.get(f"{side}Port"),
        "protocol": pair.get("protocol"),
        "candidateType": pair.get(f"{side}CandidateType"),
        "deleted": False,
    }
    if relay_protocol is not None and not remote and stats["candidateType"] == "relay":
        stats["relayProtocol"] = relay_protocol
    return stats


def candidates(pc: Any) -> tuple[list[Any], list[Any]] | None:
    """aiortc's (local, remote) ``RTCIceCandidate`` lists of ``pc``; None if unreadable."""
    rtc = getattr(pc, "rtc_peer_connection", None)
    if rtc is None:
        return None
    local: list[Any] = []
    remote: list[Any] = []
    for transceiver in rtc.getTransceivers():
        dtls = getattr(transceiver.receiver, "transport", None)
        ice = getattr(dtls, "transport", None)
        if ice is None:
            continue
        local += ice.iceGatherer.getLocalCandidates()
        remote += ice.getRemoteCandidates()
    return local, remote


async def ice_candidate_stats_report(pc: Any) -> IceCandidateStatsReport | None:
    """The JS ``getRTCIceCandidateStatsReport(pc)``; None for an adapter we cannot read."""
    found = candidates(pc)
    if found is None:
        return None
    local, remote = found
    stats = await pc.get_stats()
    pair = stats.get("selectedCandidatePair")
    return candidate_stats_report(local, remote, pair if isinstance(pair, Mapping) else None)
