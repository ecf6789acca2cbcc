"""Who can reach a gateway, and whether its accounts are safe to show them.

The development account's secret is published in the source, so anyone who can
reach a gateway using it can mint tokens and place calls. :func:`check` refuses
such a gateway on any address other than loopback unless its operator says,
explicitly, that this is what they want.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket

from softphone.gateway.accounts import AccountStore


class ExposureError(ValueError):
    """The gateway would serve a publicly known secret beyond this machine."""


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only reaches this machine (every address it names).

    ``""``, ``0.0.0.0`` and ``::`` mean every interface; names are resolved.
    """
    if host in ("", "0.0.0.0", "::"):
        return False
    with contextlib.suppress(ValueError):  # not an address literal: resolve the name
        return ipaddress.ip_address(host).is_loopback
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False  # cannot tell: assume reachable
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(address).split("%", 1)[0]).is_loopback for address in addresses
    )


def check(host: str, accounts: AccountStore, *, allow_public_secret: bool) -> bool:
    """Raise :class:`ExposureError` if ``host`` is reachable and a key's secret is public.

    Returns True when the gateway runs exposed on purpose (``allow_public_secret``),
    so the caller can warn loudly; False when there is nothing to warn about.
    """
    public = accounts.public_keys()
    if not public or is_loopback(host):
        return False
    if not allow_public_secret:
        raise ExposureError(
            f"refusing to serve on {host or 'every interface'}: API key {public[0].sid} uses "
            "the development secret published in softphone's source, so anyone who can "
            "reach this address can mint tokens. Use --config or SOFTPHONE_API_KEY_* (or "
            "SOFTPHONE_DEV_SECRET), bind 127.0.0.1, or pass --allow-public-dev-account "
            "if that is really what you want"
        )
    return True
