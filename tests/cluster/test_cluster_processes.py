"""Clusters of real `zero run` processes on free loopback ports (issue 5, item 6):
bootstrap + join of 3 and of 5, kill -9 of the leader, restart and catch-up, a full-cluster
restart, SIGSTOP/SIGCONT of the leader and its timestamps, removal (and refusing the last
zero), leadership transfer, catch-up by snapshot, an emptied data dir refused, and
`zero local`.

Short ticks (20 ms x 10: a 200 ms election timeout) keep the file fast; every wait polls
with a deadline, and every process is killed in a finally (the `procs` fixture)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from procs import FAST, REPO, ProcCluster, ZeroProc, clean_env, http_json, write_until_ok
from support import until
from zero.pb import zero_pb2, zero_pb2_grpc

UID, TS = zero_pb2.UID, zero_pb2.TIMESTAMP


@pytest.fixture
def clusters(tmp_path):
    made: list[ProcCluster] = []

    def make(n: int, *, flags: tuple[str, ...] = FAST, start: bool = True) -> ProcCluster:
        c = ProcCluster(tmp_path / f"c{len(made) + 1}", n, flags=flags)
        made.append(c)
        return c.start() if start else c

    try:
        yield make
    finally:
        for c in made:
            c.cleanup()


def uids(addrs: list[str], count: int = 10, timeout: float = 10.0) -> zero_pb2.AssignedIds:
    return write_until_ok(addrs, lambda s: s.AssignIds(zero_pb2.AssignIdsRequest(kind=UID, count=count), timeout=2),
                          timeout, "AssignIds")


def stamps(addrs: list[str], count: int = 1, timeout: float = 10.0) -> zero_pb2.AssignedIds:
    return write_until_ok(addrs, lambda s: s.Timestamps(zero_pb2.TimestampsRequest(count=count), timeout=2),
                          timeout, "Timestamps")


def admin(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zero", "admin", *args], cwd=REPO, env=clean_env(),
                          capture_output=True, text=True, timeout=timeout)


def caught_up(z: ZeroProc, index: int) -> bool:
    st = z.status()
    return st is not None and st.applied >= index


def state_of(z: ZeroProc) -> zero_pb2.MembershipState:
    return z.stub.GetState(zero_pb2.GetStateRequest(), timeout=5)


@pytest.mark.timeout(45)
def test_three_kill9_leader_new_leader_writes_and_restart_catches_up(clusters) -> None:
    c = clusters(3)
    lead = c.wait_leader()
    st = state_of(lead)
    assert sorted(st.zeros) == [1, 2, 3] and st.cluster_id
    assert {z.raft_id for z in c.zeros} == {1, 2, 3}
    before = uids(c.addrs)

    lead.kill9()
    others = [z for z in c.zeros if z is not lead]
    t0 = time.monotonic()
    new = c.wait_leader(10, among=others)
    after = uids([z.addr for z in others])
    assert after.start_id > before.end_id
    assert time.monotonic() - t0 < 5  # election timeout is 200 ms here
    assert new.raft_id != lead.raft_id
    for i in range(20):
        new.stub.Connect(zero_pb2.ConnectRequest(addr=f"dn{i}:7080"), timeout=5)
    target = new.status().commit  # type: ignore[union-attr]

    lead.start()  # same data dir, no --peer: it rejoins with its identity
    body = lead.wait_healthy()
    assert body["raft_id"] == lead.raft_id and body["role"] == "FOLLOWER"
    until(lambda: caught_up(lead, target), 15, message="the restarted zero to catch up")
    assert sum(len(g.members) for g in state_of(lead).groups.values()) == 20  # through it, linearizable
    # One leader every zero agrees on (asked one zero after another over HTTP: polled,
    # since the restarted zero's first pre-vote round may still be settling).
    c.wait_leader(10)


@pytest.mark.timeout(60)
def test_five_full_restart_keeps_members_tablets_and_leases(clusters) -> None:
    c = clusters(5)
    lead = c.wait_leader()
    assert sorted(state_of(lead).zeros) == [1, 2, 3, 4, 5]
    for i in range(6):
        r = lead.stub.Connect(zero_pb2.ConnectRequest(addr=f"dn{i}:7080"), timeout=5)
        lead.stub.ShouldServe(zero_pb2.Tablet(predicate=f"p{i}", group_id=r.member.group_id), timeout=5)
    uid_max = max(uids(c.addrs, count=1000).end_id for _ in range(3))
    ts_max = max(stamps(c.addrs, count=5).end_id for _ in range(3))
    before = state_of(lead)

    # Half with SIGTERM, half with kill -9, all down at once.
    for i, z in enumerate(c.zeros):
        if i % 2:
            z.kill9()
        else:
            assert z.stop() == 0
    for z in c.zeros:
        z.start()
    lead = c.wait_leader(20)
    after = state_of(lead)
    assert after.cluster_id == before.cluster_id
    assert sorted(after.zeros) == [1, 2, 3, 4, 5]
    for gid, g in before.groups.items():
        assert sorted(after.groups[gid].members) == sorted(g.members)
        assert sorted(after.groups[gid].tablets) == sorted(g.tablets)
    assert after.max_uid >= uid_max and after.max_txn_ts >= ts_max
    assert after.version >= before.version
    assert uids(c.addrs).start_id > uid_max
    assert stamps(c.addrs).start_id > ts_max


@pytest.mark.timeout(45)
def test_sigstop_leader_others_elect_resumed_leader_never_hands_out_an_older_timestamp(clusters) -> None:
    c = clusters(3)
    old = c.wait_leader()
    stamps(c.addrs)
    old.signal(signal.SIGSTOP)
    try:
        others = [z for z in c.zeros if z is not old]
        new = c.wait_leader(10, among=others)
        assert new is not old
        new_max = max(stamps([new.addr], count=3).end_id for _ in range(5))

        # Resume the old leader and ask it for timestamps at once, before it has heard of
        # the new term: it must fail (or forward), never answer from its stale leadership.
        with ThreadPoolExecutor(4) as pool:
            old.signal(signal.SIGCONT)
            stub = zero_pb2_grpc.ZeroStub(grpc.insecure_channel(old.addr))

            def ask() -> int | grpc.StatusCode:
                try:
                    return int(stub.Timestamps(zero_pb2.TimestampsRequest(count=1), timeout=3).start_id)
                except grpc.RpcError as e:
                    return e.code()
            got = list(pool.map(lambda _: ask(), range(8)))
        served = [g for g in got if isinstance(g, int)]
        assert all(g > new_max for g in served), (got, new_max)

        # It steps down and follows the new leader; through it, timestamps keep growing.
        until(lambda: (lambda b: b[1].get("role") == "FOLLOWER" and b[1].get("leader_id") == new.raft_id)(
            old.health()), 10, message="the resumed leader to follow the new one")
        assert c.leader() is new
        assert stamps([old.addr]).start_id > max([new_max, *served])
    finally:
        old.signal(signal.SIGCONT)


@pytest.mark.timeout(60)
def test_transfer_leader_remove_zeros_and_refuse_the_last(clusters) -> None:
    c = clusters(3)
    lead = c.wait_leader()
    to = next(z for z in c.zeros if z is not lead)
    p = admin("transfer-leader", "--addr", lead.addr, "--to", str(to.raft_id), "--json")
    assert p.returncode == 0, p.stderr
    assert c.wait_leader() is to
    p = admin("status", "--addr", to.addr, "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["role"] == "LEADER"
    assert admin("health", "--addr", lead.addr).returncode == 0

    # Remove a follower through any zero (forwarded to the leader): it exits, clearly.
    lead = to
    victim = next(z for z in c.zeros if z is not lead)
    p = admin("remove-node", "--group", "0", "--id", str(victim.raft_id), "--addr", victim.addr)
    assert p.returncode == 0, p.stderr
    assert f"removed zero {victim.raft_id}" in p.stdout
    assert victim.wait_exit(10) == 1
    assert "removed from the cluster" in victim.log_tail()
    left = [z for z in c.zeros if z is not victim]
    st = state_of(lead)
    assert sorted(st.zeros) == sorted(z.raft_id for z in left)
    assert victim.raft_id in [m.id for m in st.removed]
    uids([z.addr for z in left])

    # Remove the leader itself: it hands leadership over first, then is removed.
    p = admin("remove-node", "--group", "0", "--id", str(lead.raft_id), "--addr", lead.addr)
    assert p.returncode == 0, p.stderr
    assert lead.wait_exit(15) == 1
    last = next(z for z in left if z is not lead)
    c.wait_leader(10, among=[last])
    assert sorted(state_of(last).zeros) == [last.raft_id]
    uids([last.addr])

    # The last zero cannot be removed: refused (exit 1), and it keeps serving.
    p = admin("remove-node", "--group", "0", "--id", str(last.raft_id), "--addr", last.addr)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "FAILED_PRECONDITION" in p.stderr and "last" in p.stderr
    assert last.running and last.health()[0] == 200
    # A removed zero restarted on its data dir is refused at start.
    victim.start()
    assert victim.wait_exit(15) == 1
    assert "removed" in victim.log_tail(1000)


@pytest.mark.timeout(60)
def test_zero_down_while_log_compacted_catches_up_by_snapshot(clusters) -> None:
    c = clusters(3, flags=(*FAST, "--snapshot-after", "50"))
    lead = c.wait_leader()
    down = next(z for z in c.zeros if z is not lead)
    down.kill9()
    # More entries than a snapshot keeps behind it (zero/replica/snapshots.py CATCHUP_ENTRIES = 1000).
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: lead.stub.Connect(zero_pb2.ConnectRequest(addr=f"dn{i}:7080"), timeout=10),
                      range(1300)))
    p = admin("snapshot", "--addr", lead.addr, "--json")
    assert p.returncode == 0, p.stderr
    target = lead.status().commit  # type: ignore[union-attr]
    down.start()
    down.wait_healthy()
    until(lambda: caught_up(down, target), 20, message="the lagging zero to catch up")
    log = down.log_tail(10**7)
    assert "installed snapshot from leader" in log
    assert sum(len(g.members) for g in state_of(down).groups.values()) == 1300
    uids(c.addrs)


@pytest.mark.timeout(45)
def test_emptied_data_dir_cannot_join_or_talk_to_the_first_cluster(clusters) -> None:
    c = clusters(3)
    lead = c.wait_leader()
    cid = state_of(lead).cluster_id
    z = next(z for z in c.zeros if z is not lead)
    rid = z.raft_id
    z.kill9()
    shutil.rmtree(z.data_dir)

    # Rejoining with its old id: refused, with a message naming the problem.
    z.start("--raft-id", str(rid), "--peer", lead.addr)
    assert z.wait_exit(20) == 1
    assert "lost its data directory" in z.log_tail(), z.log_tail()

    # Without --peer it bootstraps a cluster of its own, which the first one refuses
    # to talk to (another cluster id): the first keeps its leader, id and members.
    shutil.rmtree(z.data_dir)
    z.start("--raft-id", str(rid))
    body = z.wait_healthy()
    assert body["role"] == "LEADER"
    other = until(lambda: (lambda s: s if s.cluster_id else None)(state_of(z)), 10, message="its own cluster id")
    assert other.cluster_id != cid and list(other.zeros) == [rid]
    rest = [x for x in c.zeros if x is not z]
    term = lead.health()[1]["term"]
    uids([x.addr for x in rest])
    time.sleep(1.0)  # five election timeouts with both clusters up
    assert c.leader(rest) is lead and lead.health()[1]["term"] == term
    st = state_of(lead)
    assert st.cluster_id == cid and sorted(st.zeros) == [1, 2, 3]
    assert list(state_of(z).zeros) == [rid]  # nothing leaked into the new one either


def _local_proc(data: Path, out: Path, err: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "zero", "local", "--nodes", "3", "--data-dir", str(data),
                             "--", *FAST], cwd=REPO, env=clean_env(), stdout=open(out, "wb"),
                            stderr=open(err, "wb"))


def _local_pids(data: Path) -> list[int]:
    pids = []
    for lock in sorted(data.glob("n*/LOCK")):
        text = lock.read_text().strip()
        if text.isdigit():
            pids.append(int(text))
    return pids


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie of an exited child (not ours to reap) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.timeout(60)
def test_zero_local_starts_serves_and_stops_on_sigint(tmp_path) -> None:
    data, out, err = tmp_path / "zl", tmp_path / "out", tmp_path / "err"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        p = _local_proc(data, out, err)
        procs.append(p)
        text = until(lambda: (p.poll() is None or pytest.fail(err.read_text())) and
                     "Ctrl-C stops" in out.read_text() and out.read_text(), 30, message="zero local's addresses")
        addrs = re.search(r"^zeros: (\S+)$", text, re.M).group(1).split(",")  # type: ignore[union-attr]
        assert len(addrs) == 3 and len(set(addrs)) == 3
        assert len(re.findall(r"http://127\.0\.0\.1:\d+", text)) == 3
        first = uids(addrs, count=100)
        pids = _local_pids(data)
        assert len(pids) == 3

        p.send_signal(signal.SIGINT)
        assert p.wait(20) == 0, err.read_text()
        assert "all zeros stopped" in out.read_text()
        until(lambda: all(_gone(pid) for pid in pids), 5, message="every zero to exit")
        assert all(http_json(f"http://{a}/live")[0] == 0 for a in addrs)

        # Again on the same dir: the same cluster and ports, its state kept; a zero that
        # dies is reported; SIGTERM stops the rest.
        p = _local_proc(data, out, err)
        procs.append(p)
        text = until(lambda: (p.poll() is None or pytest.fail(err.read_text())) and
                     "Ctrl-C stops" in out.read_text() and out.read_text(), 30, message="the restarted cluster")
        assert "restarting" in text
        assert re.search(r"^zeros: (\S+)$", text, re.M).group(1).split(",") == addrs  # type: ignore[union-attr]
        assert uids(addrs).start_id > first.end_id
        victim = _local_pids(data)[2]
        os.kill(victim, signal.SIGKILL)
        until(lambda: "unexpectedly" in err.read_text(), 5, message="the dead zero to be reported")
        assert "n3" in err.read_text()
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 1  # a zero had died: reported in the exit code
    finally:
        for q in procs:
            if q.poll() is None:
                q.kill()
                q.wait(10)
        for pid in _local_pids(data) if data.exists() else []:
            try:  # only our own children (the pid in LOCK may be stale)
                if str(data).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
