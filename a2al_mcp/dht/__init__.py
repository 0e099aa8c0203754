"""The DHT: routing table, record store, lookups and the sans-I/O DHT core."""
