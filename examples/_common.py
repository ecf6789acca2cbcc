"""What the examples share: a gateway to talk to, tokens for it, and logging.

With no arguments an example starts the development gateway in this process on
127.0.0.1 (as ``softphone demo`` does) and mints its own tokens, so it runs anywhere
in a few seconds. Point it at a running gateway instead with ``--gateway URL --token
TOKEN`` (for a local ``softphone gateway``: ``--gateway wss://127.0.0.1:9443
--token "$(softphone token --identity bot)" --cert ~/.softphone/gateway-cert.pem``).

Logging is the application's business, never the library's: :func:`gateway_setup`
configures :mod:`logging` for the example and passes ``--log-level`` to each Device
as its ``log_level`` option, which sets the level of the SDK's ``softphone`` logger.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from softphone import client_ssl_context
from softphone.gateway.accounts import DEV_APPLICATION_SID, AccountStore
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tokens import mint_token
from softphone.media.aiortc_hooks import use_host_addresses

LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "silent")


@dataclass
class Setup:
    """Where the example's Devices connect, and how they get tokens."""

    url: str
    ssl_context: ssl.SSLContext | None
    log_level: str
    mint: Callable[[str], str] | None
    """Mints a token for an identity (embedded gateway only)."""
    given_token: str | None

    @property
    def embedded(self) -> bool:
        """True when the example runs its own gateway (and may play every role)."""
        return self.mint is not None

    def token(self, identity: str) -> str:
        """A token for ``identity``: minted here, or the one given with ``--token``."""
        if self.mint is not None:
            return self.mint(identity)
        if self.given_token is None:
            raise SystemExit("--token is required with --gateway")
        return self.given_token

    def device_options(self, **extra: Any) -> dict[str, Any]:
        """The Device options every example uses, plus ``extra``."""
        options: dict[str, Any] = {
            "chunderw": self.url,
            "log_level": self.log_level,
            "rtc_configuration": {"iceServers": []},
        }
        if self.ssl_context is not None:
            options["ssl_context"] = self.ssl_context
        return {**options, **extra}


def add_gateway_arguments(parser: argparse.ArgumentParser, *, external: bool = True) -> None:
    """``--gateway``, ``--token``, ``--cert`` and ``--log-level`` (only the last one for an
    example that needs the embedded gateway, ``external=False``)."""
    group = parser.add_argument_group("gateway (default: start one in this process)")
    if external:
        group.add_argument(
            "--gateway", metavar="URL", help="a running gateway, e.g. wss://127.0.0.1:9443"
        )
        group.add_argument("--token", help="access token for this example's Device")
        group.add_argument("--cert", metavar="PEM", help="trust this (self-signed) certificate")
    else:
        parser.set_defaults(gateway=None, token=None, cert=None)
    group.add_argument(
        "--log-level", default="warn", choices=LOG_LEVELS, help="SDK log level (default warn)"
    )


@contextlib.asynccontextmanager
async def gateway_setup(args: argparse.Namespace) -> AsyncIterator[Setup]:
    """Configure logging, then yield the gateway given on the command line or a local one."""
    from softphone.core.log import to_logging_level

    logging.basicConfig(
        level=to_logging_level(args.log_level),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    context = client_ssl_context(args.cert) if args.cert else None
    if args.gateway:
        yield Setup(args.gateway, context, args.log_level, None, args.token)
        return
    use_host_addresses(["127.0.0.1"])  # media on loopback only (aioice skips 127.0.0.1)
    accounts = AccountStore.dev()
    key = accounts.default_key()
    gateway = await Gateway(accounts, GatewayConfig(port=0)).start()

    def mint(identity: str) -> str:
        return mint_token(key, identity, outgoing_application_sid=DEV_APPLICATION_SID)

    try:
        yield Setup(gateway.url, context, args.log_level, mint, None)
    finally:
        await gateway.stop()
