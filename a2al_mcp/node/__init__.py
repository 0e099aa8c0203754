"""The node: one socket, the DHT (and later QUIC and mailbox) services, the public async API."""

from .node import Node
from .status import ContainedErrors, NodeStatus, ResolvedEndpoint, ServiceEntry

__all__ = ["ContainedErrors", "Node", "NodeStatus", "ResolvedEndpoint", "ServiceEntry"]
