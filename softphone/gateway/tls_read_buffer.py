"""asyncio's per-connection TLS read buffer, sized for a server holding many idle sockets.

asyncio's SSL transport gives every connection its own read buffer of
``asyncio.sslproto.SSLProtocol.max_size`` bytes (256 KiB in CPython 3.11-3.13),
allocated and zero-filled when the connection is made. A gateway holds one socket per
registered device, mostly idle, so that buffer alone was 256 KiB of resident memory
per device. Signaling frames are a few kB, and the buffer is only scratch space
(decrypted bytes are copied out of it before the protocol sees them), so a small one
costs a few more loop iterations on a large frame and nothing else.

``max_size`` is not a public API: this module is the only place that touches it, and
``tests/test_tls_read_buffer.py`` fails loudly if a Python upgrade renames it or stops
sizing the buffer by it. The setting is process-wide; every TLS connection of the
process (the gateway's sockets, its webhook client) uses the smaller buffer.
"""

from __future__ import annotations

import asyncio.sslproto
import logging

log = logging.getLogger("softphone.gateway.tls")

GATEWAY_TLS_READ_BUFFER = 4096
"""Bytes of TLS read buffer per connection in a gateway process."""


def shrink_tls_read_buffer(size: int = GATEWAY_TLS_READ_BUFFER) -> bool:
    """Make asyncio's TLS connections opened from now on read through ``size`` bytes.

    Only ever shrinks. False (with a warning) when this Python's asyncio has no such
    setting: connections then keep asyncio's own buffer, which works, only larger.
    """
    protocol = getattr(asyncio.sslproto, "SSLProtocol", None)
    current = getattr(protocol, "max_size", None)
    if protocol is None or not isinstance(current, int):
        log.warning(
            "this Python's asyncio has no SSLProtocol.max_size: each TLS connection keeps "
            "asyncio's own read buffer"
        )
        return False
    if current > size:
        protocol.max_size = size
    return True
