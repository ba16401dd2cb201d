"""Tools from Model Context Protocol servers.

- :mod:`.config`: the server lists (config.toml's ``[mcp_servers.NAME]`` tables and a project's
  ``.mcp.json`` in Claude Code's format), parsed and checked, and the tool names the model sees.
- :mod:`.hub`: one session's servers, supervised: started when a turn first needs tools,
  restarted with backoff when they die, stopped with the session.
- :mod:`.client`: the one module that imports the ``mcp`` SDK (the ``greenroom[mcp]`` extra):
  connecting over stdio or streamable HTTP, listing and calling tools, results as text.

Decisions are in docs/mcp.md.
"""
