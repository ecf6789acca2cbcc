"""Who is registered where: (account, identity) -> the connections registered for calls.

Pure bookkeeping, no I/O. Identities are only unique within an account (two
customers may both have a ``bob``), so every entry is keyed by the account sid
too: a client can only ever reach identities of its own account. An identity
may have several devices (several connections); an incoming call rings all of
them. Connections are opaque keys (the gateway uses its connection objects).
A clustered gateway watches :attr:`Presence.on_change` to publish its addresses.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

Address = tuple[str, str]
"""``(account sid, identity)``: where a client can be reached."""


class Presence:
    """The registration table of one gateway."""

    def __init__(self) -> None:
        self._by_address: dict[Address, dict[Hashable, None]] = {}
        self.on_change: Callable[[Address, bool], None] | None = None
        """Called with (address, True) when an address gets its first connection and
        (address, False) when it loses its last one."""

    def register(self, account_sid: str, identity: str, connection: Hashable) -> None:
        """Mark ``connection`` as registered for ``identity`` of ``account_sid`` (idempotent)."""
        address = (account_sid, identity)
        first = address not in self._by_address
        self._by_address.setdefault(address, {})[connection] = None
        if first and self.on_change is not None:
            self.on_change(address, True)

    def unregister(self, account_sid: str, identity: str, connection: Hashable) -> bool:
        """Remove ``connection`` from that identity; True if it was registered."""
        address = (account_sid, identity)
        connections = self._by_address.get(address)
        if connections is None or connection not in connections:
            return False
        del connections[connection]
        if not connections:
            del self._by_address[address]
            if self.on_change is not None:
                self.on_change(address, False)
        return True

    def connections(self, account_sid: str, identity: str) -> list[Hashable]:
        """The registered connections of that identity, oldest registration first."""
        return list(self._by_address.get((account_sid, identity), {}))

    def is_registered(self, account_sid: str, identity: str, connection: Hashable) -> bool:
        """Whether ``connection`` is registered for that identity."""
        return connection in self._by_address.get((account_sid, identity), {})

    def addresses(self) -> list[Address]:
        """Every (account, identity) with at least one registered connection."""
        return list(self._by_address)
