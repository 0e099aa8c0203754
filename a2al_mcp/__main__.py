"""``python -m a2al_mcp``."""

from .cli import main

raise SystemExit(main())
