"""The node: one socket, the DHT (and later QUIC and mailbox) services, the public async API."""

from .node import Node, NodeStatus, ResolvedEndpoint, ServiceEntry

__all__ = ["Node", "NodeStatus", "ResolvedEndpoint", "ServiceEntry"]
