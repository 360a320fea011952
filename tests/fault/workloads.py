"""Client workloads: threads that call zero over plain gRPC stubs (no client-side retry
magic, so the history shows exactly what zero answered) and record every call.

Each client sends to one zero and moves to another on an error; any zero accepts any
data-node RPC (a follower forwards), so the nemesis is free to hit any of them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from zero.pb import zero_pb2, zero_pb2_grpc

from .history import FAIL, INFO, OK, History, Op

__all__ = ["Mix", "Client", "Watcher", "Workload", "QueuedCalls", "DEFINITE_ERRORS", "request", "outcome"]

# Answers that say the call did not happen; anything else (UNAVAILABLE, DEADLINE_EXCEEDED,
# RESOURCE_EXHAUSTED, a dropped connection) is indeterminate.
DEFINITE_ERRORS = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                             grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED,
                             grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNIMPLEMENTED})
RPC_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class Mix:
    """Relative weights of the operations a client picks from."""
    uid: int = 3
    ts: int = 4
    claim: int = 3
    connect: int = 1


class Client(threading.Thread):
    def __init__(self, name: str, addrs: Sequence[str], history: History, rng: random.Random,
                 stop: threading.Event, *, groups: Sequence[int], tablets: int = 12, mix: Mix = Mix(),
                 think: float = 0.005) -> None:
        super().__init__(name=name, daemon=True)
        self.addrs = list(addrs)
        self.h = history
        self.rng = rng
        self.stop_event = stop
        self.groups = list(groups)
        self.tablets = tablets
        self.think = think
        self._fs = ["uid", "ts", "claim", "connect"]
        self._weights = [mix.uid, mix.ts, mix.claim, mix.connect]
        self._target = rng.randrange(len(self.addrs))
        self._chans = {a: grpc.insecure_channel(a) for a in self.addrs}
        self._connects = 0

    def _stub(self) -> zero_pb2_grpc.ZeroStub:
        return zero_pb2_grpc.ZeroStub(self._chans[self.addrs[self._target]])

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.step(self.rng.choices(self._fs, self._weights)[0])
                time.sleep(self.think * self.rng.random())
        finally:
            for c in self._chans.values():
                c.close()

    def step(self, f: str) -> None:
        stub = self._stub()
        if f == "connect":
            self._connects += 1
        op, method, req, conv = request(self.h, self.name, f, self.rng, node=self._target, groups=self.groups,
                                        tablets=self.tablets, connect_addr=f"{self.name}-m{self._connects}:7080")
        try:
            r = getattr(stub, method)(req, timeout=RPC_TIMEOUT)
        except grpc.RpcError as e:
            self.h.end(op, *outcome(e))
            self._target = (self._target + 1 + self.rng.randrange(len(self.addrs) - 1 or 1)) % len(self.addrs)
            time.sleep(0.02 + 0.03 * self.rng.random())
            return
        self.h.end(op, OK, conv(r))


def outcome(e: grpc.RpcError) -> tuple[str, None, str]:
    """(type, value, error) of a failed call, for History.end."""
    code = e.code() if hasattr(e, "code") else None
    typ = FAIL if code in DEFINITE_ERRORS else INFO
    return typ, None, f"{code}: {e.details() if hasattr(e, 'details') else e}"


def request(h: History, process: str, f: str, rng: random.Random, *, node: int, groups: Sequence[int],
            tablets: int, connect_addr: str) -> tuple[Op, str, Any, Callable[[Any], dict[str, Any]]]:
    """One call of kind `f` ("uid", "ts", "claim", "connect"), begun in the history:
    (op, the Zero method's name, its request, answer -> the op's value)."""
    ids = lambda r: {"start": r.start_id, "end": r.end_id}  # noqa: E731
    if f == "uid":
        n = rng.randint(1, 100)
        op = h.begin(process, "uid", count=n, node=node)
        return op, "AssignIds", zero_pb2.AssignIdsRequest(kind=zero_pb2.UID, count=n), ids
    if f == "ts":
        n = rng.randint(1, 3)
        via = rng.choice(("Timestamps", "AssignIds"))
        op = h.begin(process, "ts", count=n, via=via, node=node)
        if via == "Timestamps":
            return op, "Timestamps", zero_pb2.TimestampsRequest(count=n), ids
        return op, "AssignIds", zero_pb2.AssignIdsRequest(kind=zero_pb2.TIMESTAMP, count=n), ids
    if f == "claim":
        tablet = f"t{rng.randrange(tablets)}"
        gid = rng.choice([*groups, 0])  # 0: a lookup only
        op = h.begin(process, "claim", tablet=tablet, group=gid, node=node)
        return (op, "ShouldServe", zero_pb2.Tablet(predicate=tablet, group_id=gid),
                lambda r: {"group": r.group_id, "read_only": r.read_only})
    assert f == "connect", f
    op = h.begin(process, "connect", addr=connect_addr, node=node)
    return (op, "Connect", zero_pb2.ConnectRequest(addr=connect_addr),
            lambda r: {"id": r.member.id, "group": r.member.group_id})


class QueuedCalls:
    """Calls sent to one zero while it is paused (SIGSTOP), each with a deadline that runs
    past its SIGCONT, so the answers it gives once it runs again reach the caller: each
    is recorded when it arrives, like a client's call (an ok answer is checked like any
    other; an indeterminate one is not). The channel is connected (`ready`) before the
    pause, so the requests wait in the paused zero's socket."""

    def __init__(self, addr: str, history: History, rng: random.Random, *, process: str, node: int,
                 tablets: int = 12) -> None:
        self.h = history
        self.rng = rng
        self.process = process
        self.node = node
        self.tablets = tablets
        self.groups: list[int] = []
        self._ch = grpc.insecure_channel(addr)
        self._stub = zero_pb2_grpc.ZeroStub(self._ch)
        self._lock = threading.Lock()
        self._pending: list[Op] = []
        self._done: set[int] = set()  # id()s of the ops that have their answer
        self._connects = 0

    def ready(self, timeout: float) -> None:
        """Connect, and learn the groups to claim tablets for (raises when it cannot)."""
        st = self._stub.GetState(zero_pb2.GetStateRequest(), timeout=timeout)
        self.groups = sorted(g for g in st.groups if g)

    def send(self, f: str, timeout: float) -> None:
        if f == "connect":
            self._connects += 1
        op, method, req, conv = request(self.h, self.process, f, self.rng, node=self.node, groups=self.groups,
                                        tablets=self.tablets,
                                        connect_addr=f"{self.process}-{self.node}-m{self._connects}:7080")
        with self._lock:
            self._pending.append(op)
        fut = getattr(self._stub, method).future(req, timeout=timeout)

        def done(fu: Any) -> None:
            try:
                r = fu.result()
            except grpc.FutureCancelledError:
                self.h.end(op, INFO, error="CANCELLED: the caller gave up")
            except grpc.RpcError as e:
                self.h.end(op, *outcome(e))
            else:
                self.h.end(op, OK, conv(r))
            with self._lock:
                self._done.add(id(op))
        fut.add_done_callback(done)

    def wait(self, timeout: float) -> dict[str, int]:
        """Until every call has its answer (or `timeout`): how many ended ok/fail/info
        ("pending": still without an answer)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._done) == len(self._pending):
                    break
            time.sleep(0.02)
        out = {OK: 0, FAIL: 0, INFO: 0, "pending": 0}
        with self._lock:
            for o in self._pending:
                out[o.type if id(o) in self._done else "pending"] += 1
        return out

    def close(self) -> None:
        self._ch.close()  # cancels what is still pending (recorded as info)


class Watcher(threading.Thread):
    """Follows StreamMembership, resubscribing (from the last version, on another zero)
    after any error; records one `watch` op per complete state or delta it applies."""

    def __init__(self, name: str, addrs: Sequence[str], history: History, rng: random.Random,
                 stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.addrs = list(addrs)
        self.h = history
        self.rng = rng
        self.stop_event = stop
        self.version = 0
        self.cluster_id = ""
        self._call: grpc.Future | None = None
        self._lock = threading.Lock()
        self.resubscribes = 0

    def run(self) -> None:
        target = self.rng.randrange(len(self.addrs))
        while not self.stop_event.is_set():
            ch = grpc.insecure_channel(self.addrs[target])
            # One op per subscription: ok at its first message, info if it ends without one.
            sub = self.h.begin(self.name, "subscribe", node=target, since=self.version)
            try:
                call = zero_pb2_grpc.ZeroStub(ch).StreamMembership(zero_pb2.StreamMembershipRequest(
                    since_version=self.version, cluster_id=self.cluster_id))
                with self._lock:
                    self._call = call
                if self.stop_event.is_set():
                    call.cancel()
                for u in call:
                    if sub.type != OK:
                        self.h.end(sub, OK, {"version": u.version, "full": u.full})
                    if u.full and not u.last_chunk:
                        continue
                    now = time.monotonic()
                    self.version, self.cluster_id = u.version, u.cluster_id
                    self._record(now, u, target)
            except grpc.RpcError as e:
                err = f"{e.code() if hasattr(e, 'code') else e}"
                if sub.type != OK:
                    self.h.end(sub, INFO, error=err)
                op = self.h.begin(self.name, "resubscribe", node=target)
                self.h.end(op, INFO, error=err)
            finally:
                ch.close()
            if self.stop_event.is_set():
                break
            self.resubscribes += 1
            target = (target + 1) % len(self.addrs)
            time.sleep(0.05 + 0.05 * self.rng.random())

    def _record(self, now: float, u: zero_pb2.MembershipUpdate, target: int) -> None:
        op = self.h.begin(self.name, "watch", node=target)
        op.invoke = now
        self.h.end(op, OK, {"version": u.version, "full": u.full})

    def cancel(self) -> None:
        with self._lock:
            if self._call is not None:
                self._call.cancel()


class Workload:
    """`clients` client threads and `watchers` stream watchers over `addrs`."""

    def __init__(self, addrs: Sequence[str], history: History, seed: int, *, groups: Sequence[int],
                 clients: int = 4, watchers: int = 2, mix: Mix = Mix(), tablets: int = 12) -> None:
        self.stop_event = threading.Event()
        self.watch_stop = threading.Event()  # watchers outlive the clients: they must reach the final state
        rng = random.Random(seed)
        self.clients = [Client(f"c{i}", addrs, history, random.Random(rng.random()), self.stop_event,
                               groups=groups, mix=mix, tablets=tablets) for i in range(clients)]
        self.watchers = [Watcher(f"w{i}", addrs, history, random.Random(rng.random()), self.watch_stop)
                         for i in range(watchers)]

    def start(self) -> None:
        for t in (*self.clients, *self.watchers):
            t.start()

    def stop_clients(self) -> None:
        self.stop_event.set()
        for c in self.clients:
            c.join(10)

    def stop_watchers(self) -> None:
        self.watch_stop.set()
        for w in self.watchers:
            w.cancel()
        for w in self.watchers:
            w.join(10)
