"""Framework adapters, installed as ``a2al_mcp.adapters``: a2a (A2A over A2AL), langchain and
crewai. Each needs its optional extra and is imported lazily; this package imports nothing."""
