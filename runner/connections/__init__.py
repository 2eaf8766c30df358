"""Connections: Redis (a URL, an embedded server, Sentinel), replica confirmation, and Lua
scripts (declared by the names of their keys and arguments, registered once per client).

Owns: runner.connections.redis, sentinel, replicas, lua.
May import: the shared modules at runner/ (config, errors, keys, tokens, record). Nothing else
of the engine.
"""
