"""The local dev gateway a phone starts when it is given no ``--url``.

The same embedded gateway ``softphone demo`` and ``softphone preflight`` run: the
development account on 127.0.0.1, a free port (or the one asked for), media on
127.0.0.1, and tokens minted with the dev key so a phone (or another phone pointed
at the printed URL with ``softphone token``) can register and call at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from softphone.gateway.accounts import DEV_APPLICATION_SID, AccountStore
from softphone.gateway.server import Gateway, GatewayConfig
from softphone.gateway.tokens import mint_token
from softphone.media.aiortc_hooks import use_host_addresses

__all__ = ["LocalGateway", "local_gateway"]

TOKEN_TTL_S = 3600


class LocalGateway:
    """A running embedded gateway and the means to mint tokens for it."""

    def __init__(self, gateway: Gateway, accounts: AccountStore) -> None:
        self.gateway = gateway
        self._accounts = accounts

    @property
    def url(self) -> str:
        """Its signaling URL (``ws://127.0.0.1:PORT/signal``)."""
        return self.gateway.url

    def mint(self, identity: str) -> str:
        """A token for ``identity`` that may register and place calls."""
        return mint_token(
            self._accounts.default_key(),
            identity,
            ttl=TOKEN_TTL_S,
            outgoing_application_sid=DEV_APPLICATION_SID,
        )


@asynccontextmanager
async def local_gateway(port: int = 0) -> AsyncIterator[LocalGateway]:
    """Run a dev gateway on 127.0.0.1:``port`` (0: a free one) for the block."""
    use_host_addresses(["127.0.0.1"])
    accounts = AccountStore.dev()
    gateway = await Gateway(accounts, GatewayConfig(port=port)).start()
    try:
        yield LocalGateway(gateway, accounts)
    finally:
        await gateway.stop()
