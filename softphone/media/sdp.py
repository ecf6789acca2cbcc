"""Pure SDP helpers: the JS SDK's munging plus the small parsers the media layer needs.

Everything here is a function from text to text (or to plain data); nothing
touches aiortc or the network, so the behaviour can be pinned with test
vectors (media-behaviour.md §2, behaviour checklist items 298-301).

Line handling: SDP is CRLF by the RFC, but LF-only texts and the JS SDK's stray
CR (its ``setMaxAverageBitrate`` appends *after* the CR) occur in the wild.
Munging functions keep the input's line ending; parsers split on LF, drop the
trailing CR and ignore CRs inside a line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "BITRATE_MAX",
    "BITRATE_MIN",
    "DEFAULT_OPUS_PT",
    "CodecInfo",
    "OpusFmtp",
    "add_opus_fmtp",
    "advertise_address",
    "apply_codec_preferences",
    "candidate_types",
    "dtls_fingerprints",
    "has_telephone_event",
    "ice_credentials",
    "negotiated_codec",
    "new_dtls_session",
    "opus_fmtp",
    "parse_audio_codecs",
    "parse_fmtp",
    "preferred_codec_info",
    "remove_ice_lite",
    "set_max_average_bitrate",
    "strip_stray_cr",
]

BITRATE_MIN = 6000
"""Lowest ``maxaveragebitrate`` the JS SDK (and RFC 7587) accepts."""
BITRATE_MAX = 510000
"""Highest ``maxaveragebitrate`` the JS SDK (and RFC 7587) accepts."""
DEFAULT_OPUS_PT = 111
"""PT the JS SDK assumes for Opus when the SDP has no ``opus`` rtpmap."""

# Static payload types (RFC 3551) that may appear without an rtpmap line.
_STATIC_AUDIO: dict[int, tuple[str, int]] = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),
    13: ("CN", 8000),
    18: ("G729", 8000),
}
# The JS SDK's codec-order munging only knows these two static names.
_JS_STATIC_NAMES = {0: "pcmu", 8: "pcma"}
# Codecs that never carry the call's audio.
_NON_AUDIO_CODECS = {"telephone-event", "cn", "red", "rtx", "ulpfec", "flexfec"}


@dataclass(frozen=True)
class CodecInfo:
    """One payload type of an m-line, as its rtpmap/fmtp describe it."""

    pt: int
    name: str
    """Encoding name as written in the SDP (``opus``, ``PCMU``, ``telephone-event``)."""
    clock_rate: int
    channels: int = 1
    fmtp: dict[str, str] = field(default_factory=dict)
    """``a=fmtp`` parameters; a bare token such as ``0-15`` maps to ``""``."""


@dataclass(frozen=True)
class OpusFmtp:
    """What a peer's Opus fmtp asks of the encoder that sends to it (RFC 7587 §7)."""

    max_average_bitrate: int | None = None
    use_inband_fec: bool = False
    use_dtx: bool = False
    cbr: bool = False
    stereo: bool = False


# --------------------------------------------------------------------------- lines


def _eol(sdp: str) -> str:
    return "\r\n" if "\r\n" in sdp else "\n"


def _split(sdp: str) -> tuple[list[str], str, bool]:
    """Split into lines without terminators; return (lines, eol, had_trailing_eol).

    Splits on CRLF or LF (mixed endings are rejoined with the dominant one);
    a CR not followed by LF stays inside its line.
    """
    eol = _eol(sdp)
    trailing = sdp.endswith("\n")
    body = re.sub(r"\r?\n$", "", sdp)
    return re.split(r"\r?\n", body), eol, trailing


def _join(lines: Sequence[str], eol: str, trailing: bool) -> str:
    return eol.join(lines) + (eol if trailing else "")


def _clean_lines(sdp: str) -> list[str]:
    """Lines for parsing: split on LF, drop every CR."""
    return [line.replace("\r", "") for line in sdp.split("\n")]


def _sections(lines: Sequence[str]) -> list[list[str]]:
    """Session part followed by one list per media section (each starting ``m=``)."""
    out: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("m="):
            out.append([])
        out[-1].append(line)
    return out


def _first_audio_section(sdp: str) -> list[str] | None:
    for section in _sections(_clean_lines(sdp))[1:]:
        if section[0].startswith("m=audio"):
            return section
    return None


# --------------------------------------------------------------------------- parsing


def parse_fmtp(params: str) -> dict[str, str]:
    """Parse ``key=value;flag`` fmtp text into a dict (flags map to ``""``)."""
    out: dict[str, str] = {}
    for item in params.replace("\r", "").split(";"):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition("=")
        out[key.strip()] = value.strip()
    return out


def _payload_types(m_line: str) -> list[int]:
    parts = m_line.split()
    pts: list[int] = []
    for token in parts[3:]:
        if token.isdigit():
            pts.append(int(token))
    return pts


def _codecs_of_section(section: Sequence[str]) -> list[CodecInfo]:
    rtpmap: dict[int, tuple[str, int, int]] = {}
    fmtp: dict[int, dict[str, str]] = {}
    for line in section[1:]:
        if line.startswith("a=rtpmap:"):
            head, _, desc = line[len("a=rtpmap:") :].partition(" ")
            if not head.strip().isdigit():
                continue
            bits = desc.strip().split("/")
            try:
                rate = int(bits[1]) if len(bits) > 1 else 8000
                channels = int(bits[2]) if len(bits) > 2 and bits[2] else 1
            except ValueError:
                continue
            rtpmap[int(head)] = (bits[0], rate, channels)
        elif line.startswith("a=fmtp:"):
            head, _, params = line[len("a=fmtp:") :].partition(" ")
            # Tolerate "a=fmtp:111;maxaveragebitrate=..." (the JS test vector shape).
            head, _, glued = head.partition(";")
            if not head.isdigit():
                continue
            merged = fmtp.setdefault(int(head), {})
            merged.update(parse_fmtp(params))
            if glued:
                merged.update(parse_fmtp(glued))
    codecs: list[CodecInfo] = []
    for pt in _payload_types(section[0]):
        if pt in rtpmap:
            name, rate, channels = rtpmap[pt]
        elif pt in _STATIC_AUDIO:
            name, rate = _STATIC_AUDIO[pt]
            channels = 1
        else:
            continue
        codecs.append(CodecInfo(pt, name, rate, channels, fmtp.get(pt, {})))
    return codecs


def parse_audio_codecs(sdp: str) -> list[CodecInfo]:
    """Codecs of the first ``m=audio`` section, in m-line order.

    Payload types without an rtpmap are resolved from the RFC 3551 static table;
    unknown ones are skipped. Returns ``[]`` when there is no audio section.
    """
    section = _first_audio_section(sdp)
    return _codecs_of_section(section) if section else []


def negotiated_codec(sdp: str) -> CodecInfo | None:
    """The first real audio codec of the audio m-line (skipping telephone-event, CN, RED...).

    In an answer this is the codec both sides send with.
    """
    for codec in parse_audio_codecs(sdp):
        if codec.name.lower() not in _NON_AUDIO_CODECS:
            return codec
    return None


def has_telephone_event(sdp: str, clock_rate: int | None = None) -> int | None:
    """PT of ``telephone-event`` in the audio m-line (optionally at ``clock_rate``), else None."""
    for codec in parse_audio_codecs(sdp):
        if codec.name.lower() == "telephone-event" and (
            clock_rate is None or codec.clock_rate == clock_rate
        ):
            return codec.pt
    return None


def ice_credentials(sdp: str) -> tuple[str, str] | None:
    """``(ufrag, pwd)`` of the first audio section (session-level values as fallback).

    Used to spot ICE restarts (a new ufrag). None when either is missing.
    """
    sections = _sections(_clean_lines(sdp))

    def find(lines: Sequence[str], key: str) -> str | None:
        for line in lines:
            if line.startswith(key):
                return line[len(key) :].strip()
        return None

    media = next((s for s in sections[1:] if s[0].startswith("m=audio")), [])
    ufrag = find(media, "a=ice-ufrag:") or find(sections[0], "a=ice-ufrag:")
    pwd = find(media, "a=ice-pwd:") or find(sections[0], "a=ice-pwd:")
    if ufrag is None or pwd is None:
        return None
    return ufrag, pwd


def dtls_fingerprints(sdp: str) -> frozenset[str]:
    """Every ``a=fingerprint:`` value of ``sdp`` (session or media level), normalized."""
    return frozenset(
        line[len("a=fingerprint:") :].strip().lower()
        for line in _clean_lines(sdp)
        if line.startswith("a=fingerprint:")
    )


def new_dtls_session(previous_sdp: str | None, sdp: str) -> bool:
    """Whether ``sdp`` comes from a peer with another DTLS certificate than ``previous_sdp``.

    A re-offer with the same fingerprint is an ICE restart of the same session; a
    different one means the peer started over (a new peer connection), so the DTLS
    session, and with it the SRTP keys, must be new as well. False when either lacks
    a fingerprint (nothing to compare).
    """
    if previous_sdp is None:
        return False
    before, now = dtls_fingerprints(previous_sdp), dtls_fingerprints(sdp)
    return bool(before) and bool(now) and before.isdisjoint(now)


def opus_fmtp(sdp: str) -> OpusFmtp | None:
    """What the peer's Opus fmtp requests from our encoder; None if Opus is not offered.

    ``maxaveragebitrate`` outside 6000..510000 is clamped into that range; a
    non-numeric value is ignored.
    """
    for codec in parse_audio_codecs(sdp):
        if codec.name.lower() != "opus":
            continue
        params = {k.lower(): v for k, v in codec.fmtp.items()}
        bitrate: int | None = None
        raw = params.get("maxaveragebitrate", "")
        if raw.isdigit():
            bitrate = min(max(int(raw), BITRATE_MIN), BITRATE_MAX)
        return OpusFmtp(
            max_average_bitrate=bitrate,
            use_inband_fec=params.get("useinbandfec") == "1",
            use_dtx=params.get("usedtx") == "1",
            cbr=params.get("cbr") == "1",
            stereo=params.get("stereo") == "1",
        )
    return None


def preferred_codec_info(sdp: str) -> tuple[str, str]:
    """The JS SDK's ``getPreferredCodecInfo``: first rtpmap's ``name/rate[/ch]`` and its fmtp.

    Reported to insights as ``selected_codec`` / ``codec_params``; ``("", "")``
    when the SDP has no rtpmap.
    """
    match = re.search(r"^a=rtpmap:(\d+) (\S+)", sdp, re.MULTILINE)
    if match is None:
        return "", ""
    params = re.search(rf"^a=fmtp:{match.group(1)} (\S+)", sdp, re.MULTILINE)
    return match.group(2), params.group(1) if params else ""


# --------------------------------------------------------------------------- munging


def apply_codec_preferences(sdp: str, preferences: Sequence[str]) -> str:
    """Reorder audio/video m-line payload types by ``preferences`` (JS ``setCodecPreferences``).

    For each preferred name (case-insensitive) in order, all PTs with that
    name come first in their original order; the other codecs follow in the
    order their names first appear. When the new first PT of an audio section is
    PCMU or PCMA, that section's ``b=AS``/``b=TIAS`` lines are dropped (a
    fixed-rate codec needs no bandwidth cap). Names come from the rtpmap, else
    ``pcmu`` for PT 0 and ``pcma`` for PT 8. Empty ``preferences`` keep the order.
    """
    prefs = [p.lower() for p in preferences]
    lines, eol, trailing = _split(sdp)
    out: list[str] = []
    for index, section in enumerate(_sections(lines)):
        if index == 0 or not re.match(r"^m=(audio|video)\b", section[0]):
            out.extend(section)
            continue
        kind = section[0][2:7]
        names: dict[int, str] = {}
        for pt in _payload_types(section[0]):
            match = next(
                (
                    m
                    for line in section[1:]
                    if (m := re.match(rf"^a=rtpmap:{pt} ([^/\s]+)", line.replace("\r", "")))
                ),
                None,
            )
            names[pt] = match.group(1).lower() if match else _JS_STATIC_NAMES.get(pt, "")
        by_name: dict[str, list[int]] = {}
        for pt, name in names.items():
            by_name.setdefault(name, []).append(pt)
        order = [pt for name in prefs for pt in by_name.get(name, [])]
        order += [pt for name, pts in by_name.items() if name not in prefs for pt in pts]
        head = section[0].split(" ")[:3]
        m_line = " ".join([*head, *(str(pt) for pt in order)]) if order else section[0]
        body = section[1:]
        if kind == "audio" and order and names[order[0]] in ("pcmu", "pcma"):
            body = [line for line in body if not re.match(r"^b=(AS|TIAS):\d+", line)]
        out.append(m_line)
        out.extend(body)
    return _join(out, eol, trailing)


def set_max_average_bitrate(sdp: str, bps: int | None) -> str:
    """Append ``;maxaveragebitrate=<bps>`` to the Opus fmtp line(s) (JS ``setMaxAverageBitrate``).

    Does nothing unless ``bps`` is an int in 6000..510000. The Opus PT is the
    first ``opus`` rtpmap's, else 111. Unlike the JS SDK the text goes *before*
    the line's CR. Extension: aiortc writes no Opus fmtp at all, so when an
    ``opus`` rtpmap exists without any ``a=fmtp:<pt>`` line, one is inserted
    right after that rtpmap (``a=fmtp:<pt> maxaveragebitrate=<bps>``).
    """
    if not isinstance(bps, int) or isinstance(bps, bool) or not BITRATE_MIN <= bps <= BITRATE_MAX:
        return sdp
    match = re.search(r"^a=rtpmap:(\d+) opus", sdp, re.MULTILINE | re.IGNORECASE)
    pt = int(match.group(1)) if match else DEFAULT_OPUS_PT
    fmtp_re = re.compile(rf"^a=fmtp:{pt}(?![0-9])")
    lines, eol, trailing = _split(sdp)
    out: list[str] = []
    found = False
    for line in lines:
        if fmtp_re.match(line):
            found = True
            line = f"{line};maxaveragebitrate={bps}"
        out.append(line)
    if not found and match:
        rtpmap_re = re.compile(rf"^a=rtpmap:{pt} ", re.IGNORECASE)
        for i, line in enumerate(out):
            if rtpmap_re.match(line):
                out.insert(i + 1, f"a=fmtp:{pt} maxaveragebitrate={bps}")
                break
    return _join(out, eol, trailing)


def add_opus_fmtp(sdp: str, params: Mapping[str, str]) -> str:
    """Add ``params`` to the Opus fmtp line(s), keeping any key already there.

    Creates ``a=fmtp:<pt>`` right after the Opus rtpmap when there is none
    (aiortc writes none). Used to advertise what our receive path wants from
    the peer's encoder, e.g. ``useinbandfec=1`` (RFC 7587 §6.1). Without an
    Opus rtpmap the SDP is returned unchanged.
    """
    match = re.search(r"^a=rtpmap:(\d+) opus", sdp, re.MULTILINE | re.IGNORECASE)
    if match is None or not params:
        return sdp
    pt = int(match.group(1))
    fmtp_re = re.compile(rf"^a=fmtp:{pt}(?![0-9])")
    lines, eol, trailing = _split(sdp)
    out: list[str] = []
    found = False
    for line in lines:
        if fmtp_re.match(line):
            found = True
            head, _, existing = line.partition(" ")
            present = {k.lower() for k in parse_fmtp(existing)}
            extra = [f"{k}={v}" for k, v in params.items() if k.lower() not in present]
            if extra:
                line = f"{head} {';'.join([existing, *extra]) if existing else ';'.join(extra)}"
        out.append(line)
    if not found:
        rtpmap_re = re.compile(rf"^a=rtpmap:{pt} ", re.IGNORECASE)
        for i, line in enumerate(out):
            if rtpmap_re.match(line):
                body = ";".join(f"{k}={v}" for k, v in params.items())
                out.insert(i + 1, f"a=fmtp:{pt} {body}")
                break
    return _join(out, eol, trailing)


def strip_stray_cr(sdp: str) -> str:
    """Remove every CR that does not end a line.

    A JS client configured with ``maxAverageBitrate`` sends
    ``...useinbandfec=1\r;maxaveragebitrate=N\r\n``; aiortc's parser would
    split that line at the lone CR and lose the parameter.
    """
    return re.sub(r"\r(?!\n)", "", sdp)


def remove_ice_lite(sdp: str) -> str:
    """Drop every line containing ``a=ice-lite`` (JS aggressive-nomination munging).

    The JS SDK applies this on Chrome only, to remote SDPs, when
    ``forceAggressiveIceNomination`` is set; the caller decides when.
    """
    lines, eol, trailing = _split(sdp)
    return _join([line for line in lines if "a=ice-lite" not in line], eol, trailing)


def candidate_types(sdp: str) -> list[str]:
    """The ``typ`` of every ``a=candidate`` line, in order (``host``, ``srflx``, ``relay``…)."""
    types = []
    for line in _clean_lines(sdp):
        if line.startswith("a=candidate:"):
            parts = line.split()
            if "typ" in parts[:-1]:
                types.append(parts[parts.index("typ") + 1])
    return types


def advertise_address(sdp: str, external: str) -> str:
    """Put ``external`` in place of the address of every host candidate and ``c=`` line.

    A gateway behind 1:1 NAT (a cloud VM) binds its private address, but peers must be
    told the public one: this is that translation (pion's ``NAT1To1IPs``, coturn's
    ``external-ip``). Ports are kept: the NAT maps them one to one. Relay and
    server-reflexive candidates already carry outside addresses and are left alone.
    """
    lines, eol, trailing = _split(sdp)
    family = "IP6" if ":" in external else "IP4"
    out = []
    for line in lines:
        if line.startswith("a=candidate:"):
            parts = line.split(" ")
            if len(parts) > 7 and parts[6] == "typ" and parts[7] == "host":
                parts[4] = external
                line = " ".join(parts)
        elif line.startswith("c=IN "):
            line = f"c=IN {family} {external}"
        out.append(line)
    return _join(out, eol, trailing)
