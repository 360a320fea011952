"""Partitions with network namespaces (issue 11, item 2): the leader cut off from its
peers while clients still reach it, one zero cut from the other two (minority /
majority), a zero's link on the bridge down; with kill -9 and pauses mixed in; and the
oracle's bank workload under them (data nodes and clients in the client namespace). The zeros
AND the clients run inside namespaces; nothing connects to a namespace address from the
root namespace. Skipped with the reason when not root or `ip netns` does not work - except
when the environment variable CI is set (to anything but "", "0", "false" or "no"): there a
machine that cannot run them fails them, so CI never passes without partitions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from . import netns
from .netns import Namespaces, assert_inside_namespace
from .runner import pytest_timeout

HERE = Path(__file__).resolve().parent
_why = netns.unavailable()
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def _netns() -> None:
    if _why is None:
        return
    if IN_CI:
        pytest.fail(f"CI is set, and the partition tests cannot run here: {_why}. They need root, iproute2 "
                    f"and iptables (scripts/ci_fault_setup.sh)", pytrace=False)
    pytest.skip(f"partition tests skipped: {_why}")


needs_netns = pytest.mark.usefixtures("_netns")


def test_refuses_namespace_addresses_from_the_root_namespace() -> None:
    here = netns.netns_inode()
    with pytest.raises(AssertionError, match="root network namespace"):
        assert_inside_namespace(["10.231.0.1:5080"], "10.231.0.", "zf-none", here)
    with pytest.raises(AssertionError, match="does not exist"):
        assert_inside_namespace(["10.231.0.1:5080"], "10.231.0.", "zf-none", here + 1)


@needs_netns
def test_refuses_outside_its_namespace_or_subnet() -> None:
    with Namespaces(1) as ns:
        with pytest.raises(AssertionError, match="not inside namespace"):
            assert_inside_namespace([ns.ip(0) + ":5080"], ns.prefix, ns.client, -1)
        code = ("import sys; from fault.netns import assert_inside_namespace as a; "
                f"a(['{ns.ip(0)}:5080'], '{ns.prefix}', '{ns.client}', {netns.netns_inode()}); "
                f"a(['127.0.0.1:5080'], '{ns.prefix}', '{ns.client}', 0)")
        p = subprocess.run(["ip", "netns", "exec", ns.client, sys.executable, "-c", code], cwd=HERE.parent,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1 and "refusing to connect to 127.0.0.1:5080" in p.stderr, p.stderr
        token = ns.token
    assert token not in _ns_list()


def _run_in_client_ns(tmp_path: Path, ns: Namespaces, module: str, cfg: dict[str, object], timeout: float) -> None:
    """`python -m fault.<module> CFG` inside the client namespace (cwd tests/)."""
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZERO_")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), str(HERE.parent / "cluster")])
    p = subprocess.run(["ip", "netns", "exec", ns.client, sys.executable, "-m", f"fault.{module}",
                        str(tmp_path / "cfg.json")], cwd=HERE.parent, env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0 and Path(str(cfg["out"])).exists(), \
        f"runner failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"


def _ns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


@needs_netns
@pytest.mark.timeout(pytest_timeout(15.0, overhead=300.0))  # the runner's own timeout is the run + 240 s
@pytest.mark.parametrize("faults", [
    ("isolate_leader", "partition_one"),
    ("isolate_leader", "partition_one", "link_down", "kill9_leader", "pause_leader"),
], ids=["partitions", "partitions-mixed"])
def test_partitions_in_namespaces(tmp_path, seed, soak_seconds, faults) -> None:
    duration = soak_seconds or 15.0
    out = tmp_path / "result.json"
    with Namespaces(3) as ns:
        token = ns.token
        cfg = {"ns": ns.as_dict(), "root_netns": netns.netns_inode(), "root": str(tmp_path / "c"), "seed": seed, "duration": duration,
               "faults": list(faults), "name": "netns-" + "-".join(faults), "out": str(out),
               "history_dir": os.environ.get("ZERO_FAULT_HISTORY_DIR") or str(tmp_path)}
        _run_in_client_ns(tmp_path, ns, "ns_run", cfg, duration + 240)
    assert token not in _ns_list(), "a namespace of this run was left behind"
    res = json.loads(out.read_text())
    assert "error" not in res, json.dumps(res, indent=1)
    print("fault run:", json.dumps(res["summary"]))
    summary_file = os.environ.get("ZERO_FAULT_SUMMARY")
    if summary_file:
        with open(summary_file, "a") as f:
            f.write(json.dumps(res["summary"]) + "\n")
    assert not res["violations"], (f"violations; full history in {res.get('history')}:\n"
                                   + json.dumps(res["violations"], indent=1)[:6000])
    assert res["summary"]["faults"] >= 2 and res["summary"]["operations"] > 50, res["summary"]


BANK_FAULTS = ("isolate_leader", "partition_one", "link_down", "isolate_leader", "partition_one",
               "kill9_leader", "pause_random", "kill9_datanode", "transfer_storm")


@needs_netns
@pytest.mark.timeout(pytest_timeout(20.0, overhead=360.0))  # the runner's own timeout is the run + 300 s
def test_bank_under_partitions_in_namespaces(tmp_path, seed, soak_seconds) -> None:
    """The oracle's bank workload (tests/fault/txn_run.py: totals, decisions, real-time
    order, snapshots, the stream's watermark) with zeros partitioned from each other
    while clients and data nodes still reach them, links down, and the process faults."""
    duration = soak_seconds or 20.0
    out = tmp_path / "result.json"
    with Namespaces(3) as ns:
        token = ns.token
        cfg = {"ns": ns.as_dict(), "root_netns": netns.netns_inode(), "root": str(tmp_path / "c"), "seed": seed,
               "duration": duration, "faults": list(BANK_FAULTS), "name": "netns-bank", "out": str(out),
               "history_dir": os.environ.get("ZERO_FAULT_HISTORY_DIR") or str(tmp_path)}
        _run_in_client_ns(tmp_path, ns, "ns_txn_run", cfg, duration + 300)
    assert token not in _ns_list(), "a namespace of this run was left behind"
    res = json.loads(out.read_text())
    assert "error" not in res, json.dumps(res, indent=1)[:8000]
    print("fault run:", json.dumps(res["summary"]))
    assert not res["violations"], (f"violations; full history in {res.get('history')}:\n"
                                   + json.dumps(res["violations"], indent=1)[:6000])
    assert res["summary"]["partitions"], f"no partition was made: {res['summary']}"
    assert res["summary"]["committed"] > 0, res["summary"]


@needs_netns
@pytest.mark.timeout(120)
def test_watchers_on_the_majority_follow_while_the_old_leader_is_isolated(tmp_path) -> None:
    """A watcher on a zero of the majority sees each acknowledged change within 1 s,
    even while the old leader is isolated (SPEC: one message per applied batch)."""
    out = tmp_path / "result.json"
    with Namespaces(3) as ns:
        cfg = {"ns": ns.as_dict(), "root_netns": netns.netns_inode(), "root": str(tmp_path / "c"), "out": str(out)}
        (tmp_path / "cfg.json").write_text(json.dumps(cfg))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZERO_")}
        env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), str(HERE.parent / "cluster")])
        p = subprocess.run(["ip", "netns", "exec", ns.client, sys.executable, "-m", "fault.ns_watch",
                            str(tmp_path / "cfg.json")], cwd=HERE.parent, env=env, capture_output=True,
                           text=True, timeout=100)
        if p.returncode != 0 or not out.exists():  # not the xfail's reason: a real failure
            pytest.fail(f"runner failed ({p.returncode}):\n{p.stdout}\n{p.stderr}", pytrace=False)
    res = json.loads(out.read_text())
    if "error" in res:
        pytest.fail(f"the scenario did not run: {res['error']}", pytrace=False)  # not the xfail's reason
    acks = [(t, v) for t, v in res["acks"] if t < res["healed_at"] - 1.0]
    if len(acks) < 5:
        pytest.fail(f"too few writes acknowledged through the majority: {res}", pytrace=False)
    for name in res["majority"]:
        got = res["seen"][name]
        for t, v in acks:
            when = next((ts for ts, ver in got if ver >= v), None)
            assert when is not None and when - t <= 1.0, (
                f"watcher on {name} (majority) saw version {v}, acknowledged at {t:.2f}s, "
                f"{'never' if when is None else f'at {when:.2f}s'}; healed at {res['healed_at']:.2f}s; "
                f"applied before heal {res['applied_before_heal']}; seen {got[-5:]}")
