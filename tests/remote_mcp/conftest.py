"""Fixtures of the remote-MCP tests: the test tool server's command line."""

from __future__ import annotations

import sys
from pathlib import Path

SERVER = Path(__file__).with_name("tool_server.py")
STDIO_COMMAND = (sys.executable, str(SERVER), "stdio")
