"""softphone.agent: VDI-style media redirection.

The media agent (``softphone media-agent``, :class:`MediaAgent`) owns peer
connections and audio devices near the user's hardware; the app registers
:class:`MediaAgentPlugin` on its Device and keeps signaling. They talk the
JSON protocol of :mod:`softphone.agent.protocol` over a WebSocket.
"""

from softphone.agent.client import AgentClient
from softphone.agent.plugin import AGENT_PREFIX, AgentSource, MediaAgentPlugin, RemotePeerConnection
from softphone.agent.protocol import PROTOCOL_VERSION, AgentError, ProtocolError
from softphone.agent.server import MediaAgent

__all__ = [
    "AGENT_PREFIX",
    "PROTOCOL_VERSION",
    "AgentClient",
    "AgentError",
    "AgentSource",
    "MediaAgent",
    "MediaAgentPlugin",
    "ProtocolError",
    "RemotePeerConnection",
]
