"""The HTTP API (raftexample's httpapi.go), on aiohttp:

  PUT    /<key>    body = value; 204 once this node has applied the write
  GET    /<key>    200 + value, 404 if absent; linearizable (ReadIndex)
  DELETE /<key>    204 once applied
  GET    /_status  this node's raft status as JSON (role, leader, term, commit, ...)

503 when no leader is known (retry later, or on another node); 504 when a write was
not applied in time (it may still be, so retrying a PUT is safe, it is idempotent).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from .raftnode import NoLeaderError, RaftNode, RequestTimeoutError

__all__ = ["make_app"]


def make_app(rn: RaftNode) -> web.Application:
    async def status(_: web.Request) -> web.Response:
        return web.json_response(rn.status())

    async def get(req: web.Request) -> web.Response:
        try:
            value = await rn.get(req.match_info["key"])
        except NoLeaderError as e:
            return web.Response(status=503, text=f"no leader: {e}\n")
        if value is None:
            return web.Response(status=404, text="not found\n")
        return web.Response(text=value)

    async def put(req: web.Request) -> web.Response:
        try:
            value = (await req.read()).decode()
        except UnicodeDecodeError:
            return web.Response(status=400, text="the value must be UTF-8 text\n")
        return await _write(rn.put(req.match_info["key"], value))

    async def delete(req: web.Request) -> web.Response:
        return await _write(rn.delete(req.match_info["key"]))

    async def _write(op: Coroutine[Any, Any, None]) -> web.Response:
        try:
            await op
        except NoLeaderError as e:
            return web.Response(status=503, text=f"no leader: {e}\n")
        except RequestTimeoutError as e:
            return web.Response(status=504, text=f"{e}\n")
        return web.Response(status=204)

    app = web.Application()
    app.add_routes([
        web.get("/_status", status),
        web.get("/{key:.+}", get),
        web.put("/{key:.+}", put),
        web.delete("/{key:.+}", delete),
    ])
    return app
