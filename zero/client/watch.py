"""MembershipWatcher: follows StreamMembership in the background, resuming from the last
version it saw across failures and failovers, and keeps a MembershipView current."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from zero.client.router import Router
from zero.client.view import MembershipView
from zero.pb import zero_pb2
from zero.rpc import code_of

__all__ = ["MembershipWatcher"]

# Codes after which the stream is resumed at once (with the usual backoff) on the next
# target: the zero went away, or is not (or no longer) the one to ask.
RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                       grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})


class MembershipWatcher:
    def __init__(self, router: Router) -> None:
        self._router = router
        self.view = MembershipView()
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._callbacks: list[Callable[[MembershipView], None]] = []

    def start(self, on_change: Callable[[MembershipView], None] | None = None) -> None:
        """Follow StreamMembership in the background (resuming across failures);
        `on_change` is called with the view after each new complete state."""
        if on_change is not None:
            self._callbacks.append(on_change)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_synced(self, timeout: float) -> None:
        """Wait until the view holds a complete state."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self) -> None:
        router = self._router
        attempt = 0
        while not router.closed:
            stub = router.stub()
            req = zero_pb2.StreamMembershipRequest(since_version=self.view.version, cluster_id=self.view.cluster_id)
            try:
                updates: grpc.aio.UnaryStreamCall[zero_pb2.StreamMembershipRequest, zero_pb2.MembershipUpdate] = \
                    stub.StreamMembership(req)
                async for u in updates:
                    attempt = 0
                    if self.view.feed(u):
                        self._synced.set()
                        for cb in self._callbacks:
                            cb(self.view)
            except grpc.aio.AioRpcError as e:
                if code_of(e) in RESUMABLE:
                    router.redirect(e)
                else:
                    # Not retryable from here (e.g. UNIMPLEMENTED): back off longer.
                    attempt = max(attempt, 5)
            await router.backoff(attempt)
            attempt += 1
