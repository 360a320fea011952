"""Placement with real processes (issue 20): one `zero run --replicas 3` and nine
`zero datanode --label zone=X` in three zones, started zone after zone (the order that
would put a whole zone in one group without spreading).

- every group spans the three zones;
- a tablet claimed by group 1 under a rule pinning it to group 3 lands in group 3, and
  ShouldServe says so;
- `zero admin placement set FILE.yaml` with a rule for a tablet living elsewhere moves it
  into place (its keys readable at the new owner); `zero admin explain` says the rule
  holds.

Every wait polls with a deadline; ports come from the OS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from support import free_port, free_ports, until
from zero.pb import datanode_pb2 as dn
from zero.pb import datanode_pb2_grpc as dng
from zero.pb import zero_pb2, zero_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
ZONES = "aaabbbccc"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ZERO_")}


def attempt(call):  # type: ignore[no-untyped-def]
    """The call's answer, or None when it failed (a write or read retried until a deadline)."""
    try:
        return call() or True
    except grpc.RpcError:
        return None


class Procs:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.channels: list[grpc.Channel] = []

    def start(self, args: list[str], log: str) -> None:
        path = self.tmp / log
        out = open(path, "wb")
        self.procs.append((subprocess.Popen([sys.executable, "-m", "zero", *args], cwd=REPO, env=_env(),
                                            stdout=out, stderr=subprocess.STDOUT), path))
        out.close()

    def check(self) -> None:
        for p, log in self.procs:
            if p.poll() is not None:
                raise AssertionError(f"{log.name} exited with {p.returncode}:\n{log.read_text()[-3000:]}")

    def close(self) -> None:
        for ch in self.channels:
            ch.close()
        for p, _ in self.procs:
            if p.poll() is None:
                p.terminate()
        for p, _ in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


@pytest.mark.timeout(240)
def test_nine_data_nodes_in_three_zones_spread_pins_and_rule_changes(tmp_path: Path) -> None:
    procs = Procs(tmp_path)
    try:
        port, http = free_ports(2)
        zaddr = f"127.0.0.1:{port}"
        procs.start(["run", "--data-dir", str(tmp_path / "zw"), "--grpc-addr", zaddr, "--http-addr",
                     f"127.0.0.1:{http}", "--my", zaddr, "--tick", "20ms", "--replicas", "3",
                     "--rebalance-interval", "0"], "zero.log")
        ch = grpc.insecure_channel(zaddr)
        procs.channels.append(ch)
        zc, admin = zero_pb2_grpc.ZeroStub(ch), zero_pb2_grpc.ZeroAdminStub(ch)

        def state() -> zero_pb2.MembershipState | None:
            procs.check()
            try:
                return zc.GetState(zero_pb2.GetStateRequest(), timeout=2)
            except grpc.RpcError:
                return None

        until(state, 30, message="zero serving")
        addrs = []
        for i, zone in enumerate(ZONES):
            addr = f"127.0.0.1:{free_port()}"
            addrs.append(addr)
            procs.start(["datanode", "--zero", zaddr, "--addr", addr, "--label", f"zone={zone}",
                         "--size-interval", "200ms"], f"dn{i}.log")
            # One at a time: the order of joins is the point.
            until(lambda: (s := state()) is not None and any(m.addr == addr for g in s.groups.values()
                                                             for m in g.members.values()),
                  60, message=f"data node {i} joined")

        def every_group_led() -> bool:
            s = state()
            return s is not None and len(s.groups) == 3 and all(
                sum(m.healthy for m in g.members.values()) == 3 and any(m.leader for m in g.members.values())
                for g in s.groups.values())
        until(every_group_led, 90, message="three groups of three, each with a leader")
        st = state()
        assert st is not None
        for gid, g in st.groups.items():
            assert sorted(m.labels["zone"] for m in g.members.values()) == ["a", "b", "c"], (gid, g)

        def leader_stub(gid: int) -> dng.DataNodeStub:
            s = state()
            assert s is not None
            addr = next(m.addr for m in s.groups[gid].members.values() if m.leader)
            c = grpc.insecure_channel(addr)
            procs.channels.append(c)
            return dng.DataNodeStub(c)

        # A pinned tablet claimed by another group lands at its pin.
        policy = tmp_path / "policy.yaml"
        policy.write_text("rules:\n  - tablet: 'pin.*'\n    pin_group: 3\n")
        cli = [sys.executable, "-m", "zero", "admin"]
        r = subprocess.run([*cli, "placement", "set", str(policy), "--addr", zaddr, "--timeout", "30"], cwd=REPO,
                           env=_env(), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        got = zc.ShouldServe(zero_pb2.Tablet(predicate="pin.x", group_id=1), timeout=10)
        assert got.group_id == 3
        assert zc.ShouldServe(zero_pb2.Tablet(predicate="pin.x"), timeout=10).group_id == 3

        # A tablet living in group 1; a new rule moves it to group 2.
        src = leader_stub(1)
        for k in range(50):
            until(lambda: attempt(lambda: src.Put(dn.PutRequest(tablet="mv.t", key=b"k%d" % k, value=b"v%d" % k),
                                                  timeout=5)), 20, message="a write to group 1")
        s = state()
        assert s is not None and "mv.t" in s.groups[1].tablets
        policy.write_text("rules:\n  - tablet: 'pin.*'\n    pin_group: 3\n  - tablet: 'mv.*'\n    pin_group: 2\n")
        r = subprocess.run([*cli, "placement", "set", str(policy), "--addr", zaddr, "--timeout", "30"], cwd=REPO,
                           env=_env(), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "mv.t: group 1 -> 2" in r.stdout, r.stdout + r.stderr
        until(lambda: (s := state()) is not None and "mv.t" in s.groups[2].tablets
              and not s.groups[2].tablets["mv.t"].read_only, 90, message="mv.t moved into group 2")
        dst = leader_stub(2)
        got_value = until(lambda: attempt(lambda: dst.Get(dn.GetRequest(tablet="mv.t", key=b"k49"), timeout=5)),
                          20, message="read at the new owner")
        assert got_value.found and got_value.value == b"v49"
        r = subprocess.run([*cli, "explain", "mv.t", "--addr", zaddr, "--timeout", "30"], cwd=REPO, env=_env(),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.startswith("mv.t: satisfied") and "applies and holds" in r.stdout, \
            r.stdout + r.stderr
    finally:
        procs.close()
