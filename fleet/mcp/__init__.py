"""External agents' door into the fleet: an MCP server whose every call carries an agent identity.

- :mod:`~fleet.mcp.tokens`: signed, expiring, optionally scoped bearer tokens (one agent each);
- :mod:`~fleet.mcp.tools`: what each tool does, through the same enforcer and board;
- :mod:`~fleet.mcp.server`: the FastMCP server (``fleet mcp``), streamable HTTP or stdio;
- :mod:`~fleet.mcp.client`: a small client (SDK) used by heartbeats, tests and the bench.
"""
