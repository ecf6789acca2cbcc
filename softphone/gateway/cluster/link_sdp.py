"""The SDP offer of a gateway-to-gateway media leg: one codec, the caller's (pure).

Our peer connections answer with their own codec preference, so an offer listing
Opus and PCMU would make the far gateway answer Opus even for a caller that sends
PCMU, and each gateway would then transcode. Offering only the codec the caller's
leg carries (plus ``telephone-event`` for RFC 4733 digits) leaves the far gateway no
other choice: the RTP is forwarded as it is on both gateways.
"""

from __future__ import annotations

import re

_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/\s]+)")
_PT_ATTRIBUTE = re.compile(r"^a=(?:rtpmap|fmtp|rtcp-fb):(\d+)[ \t]")
TELEPHONE_EVENT = "telephone-event"
_STATIC_NAMES = {0: "pcmu", 8: "pcma", 9: "g722"}


def only_codec(sdp: str, codec: str) -> str:
    """``sdp`` with its audio m-lines offering only ``codec`` and ``telephone-event``.

    Unchanged when an audio section does not offer ``codec`` at all.
    """
    wanted = codec.lower()
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(eol)
    trailing = lines[-1] == ""
    if trailing:
        lines = lines[:-1]
    sections: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    out = sections[0]
    for section in sections[1:]:
        out.extend(_restrict(section, wanted) if section[0].startswith("m=audio") else section)
    return eol.join(out) + (eol if trailing else "")


def _restrict(section: list[str], wanted: str) -> list[str]:
    head = section[0].split(" ")
    pts = head[3:]
    names = {int(pt): _STATIC_NAMES.get(int(pt), "") for pt in pts if pt.isdigit()}
    for line in section[1:]:
        match = _RTPMAP.match(line)
        if match:
            names[int(match.group(1))] = match.group(2).lower()
    keep = [pt for pt in pts if pt.isdigit() and names.get(int(pt)) in (wanted, TELEPHONE_EVENT)]
    if not any(names.get(int(pt)) == wanted for pt in keep):
        return section
    kept = {int(pt) for pt in keep}
    body = [
        line
        for line in section[1:]
        if (match := _PT_ATTRIBUTE.match(line)) is None or int(match.group(1)) in kept
    ]
    return [" ".join([*head[:3], *keep]), *body]
