"""Several gateways as one: presence and call legs shared through Redis (``--redis``).

* :mod:`~softphone.gateway.cluster.envelope`: the JSON frames gateways send each other
  and how a router's frames for a far leg become them (pure);
* :mod:`~softphone.gateway.cluster.directory`: where presence and the records of
  call legs live in Redis (pure);
* :mod:`~softphone.gateway.cluster.link_sdp`: the gateway-to-gateway media offer (pure);
* :mod:`~softphone.gateway.cluster.remote_client`: a leg on another gateway, as the
  call router sees it;
* :mod:`~softphone.gateway.cluster.relayed_client`: a client connected to another
  gateway whose leg lives on this one (its reconnect landed there);
* :mod:`~softphone.gateway.cluster.node`: the Redis I/O (needs the ``redis`` package).
"""
