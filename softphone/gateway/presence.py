"""Who is registered where: identity -> the connections registered for incoming calls.

Pure bookkeeping, no I/O. An identity may have several devices (several
connections); an incoming call rings all of them. Connections are opaque keys
(the gateway uses its connection objects).
"""

from __future__ import annotations

from collections.abc import Hashable


class Presence:
    """The registration table of one gateway."""

    def __init__(self) -> None:
        self._by_identity: dict[str, dict[Hashable, None]] = {}

    def register(self, identity: str, connection: Hashable) -> None:
        """Mark ``connection`` as registered for ``identity`` (idempotent)."""
        self._by_identity.setdefault(identity, {})[connection] = None

    def unregister(self, identity: str, connection: Hashable) -> bool:
        """Remove ``connection`` from ``identity``; True if it was registered."""
        connections = self._by_identity.get(identity)
        if connections is None or connection not in connections:
            return False
        del connections[connection]
        if not connections:
            del self._by_identity[identity]
        return True

    def connections(self, identity: str) -> list[Hashable]:
        """The registered connections of ``identity``, oldest registration first."""
        return list(self._by_identity.get(identity, {}))

    def is_registered(self, identity: str, connection: Hashable) -> bool:
        """Whether ``connection`` is registered for ``identity``."""
        return connection in self._by_identity.get(identity, {})

    def identities(self) -> list[str]:
        """Every identity with at least one registered connection."""
        return list(self._by_identity)
