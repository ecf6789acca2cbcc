"""What the phone dials: turn what a user types into the ``To`` parameter of a call.

``client:NAME`` calls a registered client, ``echo`` the gateway's echo application,
a phone number (``+1 555 010-0199``) is sent in E.164-like form for the gateway's
application to route, and ``sip:`` addresses pass through. A bare name (``bob``) is
short for ``client:bob``, the way people type it.
"""

from __future__ import annotations

import re

__all__ = ["TARGET_HELP", "parse_target"]

TARGET_HELP = "client:NAME, a bare NAME, echo, a phone number (+15550100199) or sip:ADDRESS"

_NUMBER = re.compile(r"\+?[0-9][0-9 ()./-]*")
_NUMBER_SEPARATORS = re.compile(r"[ ()./-]")
_NAME = re.compile(r"[A-Za-z0-9_.@-]+")


def parse_target(text: str) -> str:
    """The ``To`` parameter for ``text``; ``ValueError`` saying what is accepted otherwise.

    >>> parse_target("bob"), parse_target("+1 (555) 010-0199"), parse_target("Echo")
    ('client:bob', '+15550100199', 'echo')
    """
    target = text.strip()
    if not target:
        raise ValueError(f"nothing to call: type {TARGET_HELP}")
    lowered = target.lower()
    if lowered == "echo":
        return "echo"
    if lowered.startswith("client:"):
        name = target[len("client:") :]
        if not _NAME.fullmatch(name):
            raise ValueError(f"{target!r}: a client name is letters, digits and _ (no spaces)")
        return f"client:{name}"
    if lowered.startswith("sip:"):
        if len(target) == len("sip:") or any(c.isspace() for c in target):
            raise ValueError(f"{target!r}: a SIP address has no spaces (sip:user@host)")
        return target
    if _NUMBER.fullmatch(target):
        digits = _NUMBER_SEPARATORS.sub("", target)
        if len(digits.lstrip("+")) < 3:
            raise ValueError(f"{target!r}: too short for a phone number")
        return digits
    if _NAME.fullmatch(target):
        return f"client:{target}"
    raise ValueError(f"cannot call {target!r}: type {TARGET_HELP}")
