"""Public test kit: sealed a2ald peers, seeded identities. Nothing in a2al_mcp imports it."""
