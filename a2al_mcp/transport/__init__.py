"""QUIC and the shared UDP socket: datagram classification and the async driver."""
