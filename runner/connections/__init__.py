"""Connections: Redis (a URL, an embedded server, Sentinel), replica confirmation, and the
registration of Lua scripts.

Owns: runner.connections.redis, sentinel, replicas, lua.
May import: the shared modules at runner/ (config, errors, keys, tokens, record). Nothing else
of the engine.
"""
