"""Run inside the client namespace by test_partitions.py: three zeros, one
StreamMembership watcher on each, the leader cut off from its peers (iptables in its
namespace; the clients still reach every zero), Connects written through the majority
for 3 s, then heal. Writes what each watcher saw, and each zero's applied index just
before the heal, to CONFIG's `out`."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from procs import ProcCluster, write_until_ok
from zero.pb import zero_pb2, zero_pb2_grpc

from .loopback import FLAGS
from .netns import Namespaces, assert_inside_namespace
from .ns_run import NsZero


def main(cfg_path: str) -> int:
    cfg = json.loads(Path(cfg_path).read_text())
    ns = Namespaces.from_dict(cfg["ns"])
    root = Path(cfg["root"])
    zeros = [NsZero(root / f"z{i + 1}", f"z{i + 1}", ns.nodes[i], ns.ip(i), flags=FLAGS) for i in range(3)]
    assert_inside_namespace([z.addr for z in zeros], ns.prefix, ns.client, cfg["root_netns"])
    pc = ProcCluster(root, 0, flags=FLAGS)
    pc.zeros.extend(zeros)
    seen: dict[str, list[tuple[float, int]]] = {z.name: [] for z in zeros}
    calls: list[Any] = []
    out: dict[str, Any] = {}
    t0 = time.monotonic()

    def watch(z: NsZero) -> None:
        call = zero_pb2_grpc.ZeroStub(grpc.insecure_channel(z.addr)).StreamMembership(
            zero_pb2.StreamMembershipRequest())
        calls.append(call)
        try:
            for u in call:
                if not u.full or u.last_chunk:
                    seen[z.name].append((time.monotonic() - t0, u.version))
        except grpc.RpcError:
            pass

    try:
        pc.start()
        lead = pc.wait_leader()
        for z in zeros:
            threading.Thread(target=watch, args=(z,), daemon=True).start()
        time.sleep(0.5)
        li = zeros.index(lead)
        ns.cut(li, [ns.ip(j) for j in range(3) if j != li])
        majority = [z for z in zeros if z is not lead]
        acks: list[tuple[float, int]] = []
        end = time.monotonic() + 4.0
        k = 0
        while time.monotonic() < end:
            k += 1
            r = write_until_ok([z.addr for z in majority], lambda s: s.Connect(
                zero_pb2.ConnectRequest(addr=f"x{k}:7080"), timeout=1), 5)
            acks.append((time.monotonic() - t0, r.state.version))
            time.sleep(0.2)
        applied = {z.name: (z.status().applied if z.status() else None) for z in majority}  # type: ignore[union-attr]
        healed_at = time.monotonic() - t0
        ns.heal()
        time.sleep(1.0)
        out = {"leader": lead.name, "majority": [z.name for z in majority], "acks": acks, "seen": seen,
               "applied_before_heal": applied, "healed_at": healed_at}
    except BaseException as e:  # noqa: BLE001 - reported to the test
        out = {"error": repr(e)}
    finally:
        for c in calls:
            c.cancel()
        ns.heal()
        pc.cleanup()
        Path(cfg["out"]).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
