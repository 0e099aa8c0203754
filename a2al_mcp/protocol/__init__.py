"""Wire formats of the A2AL protocol: pure functions and frozen dataclasses, no I/O."""
