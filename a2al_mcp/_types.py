"""Shared type aliases."""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["Addr", "Datagram", "Seconds"]

Addr: TypeAlias = tuple[str, int]
"""A UDP address: host and port."""

Datagram: TypeAlias = tuple[bytes, Addr]
"""A datagram and the address it came from or goes to."""

Seconds: TypeAlias = float
"""A duration or instant in seconds."""
