"""One node per data directory, shared by every local MCP client.

- :mod:`.channel`: where the node listens and who may talk to it (stdlib only);
- :mod:`.launcher`: attach to the node, or start one detached (stdlib only);
- :mod:`.proxy`: ``serve --stdio``, one client's stdio relayed to the node (stdlib only);
- :mod:`.handshake`: the node's ``initialize`` answer built without the node (stdlib only);
- :mod:`.init_cache`: the node's last ``initialize`` answer, kept per data directory (stdlib only);
- :mod:`.server`: the node process's side, one MCP session per attached client.
"""
