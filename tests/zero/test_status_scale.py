"""The status page and `zero admin state` at size (issue 23 goal 4): their answers stay
small however many groups and tablets there are (summaries, the largest groups a page at
a time, one group's tablets paged, search by name), and what they show is right.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from zero.ops.state_summary import REUSE_FACTOR, Summaries
from zero.ops.state_text import StateView, state_text
from zero.pb import state_pb2, zero_pb2

from zeroapps import one_zero


def _state(groups: int, tablets: int) -> zero_pb2.MembershipState:
    st = zero_pb2.MembershipState(version=7, cluster_id="c")
    for g in range(1, groups + 1):
        st.groups[g].members[g].CopyFrom(zero_pb2.Member(id=g, group_id=g, addr=f"dn{g}:7080", healthy=True))
    for n in range(tablets):
        g = 1 + n % groups
        st.groups[g].tablets[f"p{n}"].CopyFrom(zero_pb2.Tablet(predicate=f"p{n}", group_id=g, size_bytes=n))
    return st


def test_admin_state_text_stays_a_screenful_and_pages() -> None:
    small, medium, big = _state(40, 4_000), _state(100, 10_000), _state(600, 120_000)
    lines = {name: state_text(st).splitlines() for name, st in (("medium", medium), ("big", big))}
    assert len(lines["big"]) == len(lines["medium"]) < 600
    text = "\n".join(lines["big"])
    assert "groups (600): 600 members, 120,000 tablets, " + f"{sum(range(120_000)):,} bytes" in text
    # The largest group first: tablet p119999 is the largest, in group 1 + 119999 % 600 = 600.
    first = next(line for line in lines["big"] if line.startswith("  group "))
    assert first.startswith("  group 600: 1 members, 200 tablets")
    assert "... 580 more groups" in text
    # One group, a page of its tablets at a time, largest first.
    page = state_text(big, StateView(group=600, offset=10, limit=5)).splitlines()
    tablets = [line.split()[1] for line in page if line.startswith("    tablet ")]
    assert tablets == [f"p{119999 - 600 * i}" for i in range(10, 15)]
    assert any("tablets 11-15 of 200" in line and "--offset 15" in line for line in page)
    # Search by name: how many match, the first by name.
    found = state_text(big, StateView(tablet="p11999", limit=3)).splitlines()
    assert any("11 tablets contain 'p11999'" in line for line in found)
    assert [line.split()[1] for line in found if line.startswith("    tablet ")] == ["p11999", "p119990", "p119991"]
    # A small cluster is printed whole; --all prints every group of a large one.
    assert len([x for x in state_text(small).splitlines() if x.startswith("  group ")]) == 40
    assert len([x for x in state_text(big, StateView(everything=True)).splitlines() if x.startswith("  group ")]) == 600


def test_totals_are_reused_between_polls_of_a_large_state() -> None:
    now = [0.0]
    sums = Summaries(lambda: now[0])
    st = _state(10, 100)
    first, v = sums.get(st.groups, 1)
    assert v == 1 and sum(s.tablets for s in first) == 100
    st.groups[1].tablets["new"].CopyFrom(zero_pb2.Tablet(predicate="new", group_id=1, size_bytes=10**9))
    assert sums.get(st.groups, 2)[1] == 2  # cheap (the clock did not move): recomputed at once
    assert sums.get(st.groups, 2)[0][0].id == 1  # the new largest group
    # A computation that takes 5 s is reused for REUSE_FACTOR x 5 s.
    calls = iter([0.0, 5.0, 6.0, 5.0 + 5 * REUSE_FACTOR, 5.0 + 5 * REUSE_FACTOR, 5.0 + 5 * REUSE_FACTOR])
    sums = Summaries(lambda: next(calls))
    assert sums.get(st.groups, 1)[1] == 1   # computed at 0, took 5 s
    assert sums.get(st.groups, 2)[1] == 1   # at 6 s: reused (younger than 10 x 5 s)
    assert sums.get(st.groups, 3)[1] == 3   # at 55 s: recomputed


def _get(base: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(base + path, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_status_page_stays_small_at_size(tmp_path: Path) -> None:
    groups, tablets = 300, 60_000

    async def main() -> dict[str, Any]:
        app = await one_zero(tmp_path)
        try:
            node = app.node
            assert node is not None
            for i in range(groups):
                await node.propose(state_pb2.Proposal(connect=state_pb2.ConnectMember(addr=f"dn{i}:7080", replicas=1)))
            for start in range(0, tablets, 10_000):
                await node.propose(state_pb2.Proposal(claim_tablets=state_pb2.ClaimTablets(tablets=[
                    zero_pb2.Tablet(predicate=f"p{n}", group_id=1 + n % groups) for n in range(start, start + 10_000)])))
            await node.propose(state_pb2.Proposal(tablet_sizes=zero_pb2.TabletSizes(group_id=7, sizes={"p6": 10**12})))
            base = f"http://127.0.0.1:{app.http_port}"
            out: dict[str, Any] = {}
            for name, path in (("page", "/"), ("json", "/status.json"),
                               ("second", "/status.json?groups_offset=24&groups_limit=24"),
                               ("group", "/status.json?group=7&tablet_offset=1&tablet_limit=50"),
                               ("search", "/status.json?tablet=p5999"),
                               ("bad", "/status.json?groups_limit=0"), ("unknown", "/status.json?page=2"),
                               ("control", "/status.json?tablet=a%0Ab")):
                out[name] = await asyncio.to_thread(_get, base, path)
            return out
        finally:
            await app.stop()

    out = asyncio.run(main())
    assert out["page"][0] == 200 and len(out["page"][1]) < 150_000, len(out["page"][1])
    code, body = out["json"]
    assert code == 200 and len(body) < 150_000, len(body)
    r = json.loads(body)
    assert r["totals"]["groups"] == groups and r["totals"]["tablets"] == tablets and r["totals"]["members"] == groups
    assert [g["id"] for g in r["groups"]][:1] == [7]  # the group holding the 1 TB tablet leads
    assert len(r["groups"]) == 24 and all(len(g["tablets"]) <= 12 and g["tablet_count"] == 200 for g in r["groups"])
    assert r["groups_page"] == {"offset": 0, "limit": 24, "total": groups}
    second = json.loads(out["second"][1])
    assert not {g["id"] for g in second["groups"]} & {g["id"] for g in r["groups"]}
    one = json.loads(out["group"][1])["group"]
    assert one["id"] == 7 and one["tablet_count"] == 200 and len(one["tablets"]) == 50
    # After the largest (p6, offset 1): the others are all 0 bytes, so by name.
    rest = sorted(f"p{n}" for n in range(tablets) if 1 + n % groups == 7 and n != 6)
    assert [t["name"] for t in one["tablets"]] == rest[:50]
    search = json.loads(out["search"][1])["search"]
    assert search["count"] == 11 and search["tablets"][0] == {"name": "p5999", "group_id": 1 + 5999 % groups,
                                                              "size_bytes": 0, "read_only": False, "moving": False}
    for bad in ("bad", "unknown", "control"):
        assert out[bad][0] == 400 and json.loads(out[bad][1])["code"] == "INVALID_ARGUMENT", out[bad]


def _admin(argv: list[str]) -> tuple[int, str, str]:
    import io

    from zero import cli
    from zero.ops.admin import run_admin
    out, err = io.StringIO(), io.StringIO()
    code = run_admin(cli.build_parser().parse_args(["admin", *argv]), out, err)
    return code, out.getvalue(), err.getvalue()


def test_zero_admin_state_views_on_a_live_zero(tmp_path: Path) -> None:
    async def main() -> dict[str, tuple[int, str, str]]:
        app = await one_zero(tmp_path)
        try:
            node = app.node
            assert node is not None
            for i in range(60):
                await node.propose(state_pb2.Proposal(connect=state_pb2.ConnectMember(addr=f"dn{i}:7080", replicas=1)))
            await node.propose(state_pb2.Proposal(claim_tablets=state_pb2.ClaimTablets(tablets=[
                zero_pb2.Tablet(predicate=f"p{n}", group_id=1 + n % 60) for n in range(600)])))
            addr = f"127.0.0.1:{app.grpc_port}"
            runs = {"summary": ["state", "--addr", addr, "--top", "3"],
                    "group": ["state", "--addr", addr, "--group", "5", "--limit", "4"],
                    "group-json": ["state", "--addr", addr, "--group", "5", "--limit", "4", "--json"],
                    "find-json": ["state", "--addr", addr, "--tablet", "p59", "--json"],
                    "whole-json": ["state", "--addr", addr, "--json"],
                    "bad": ["state", "--addr", addr, "--top", "-1"]}
            out = {}
            for name, argv in runs.items():
                try:
                    out[name] = await asyncio.to_thread(_admin, argv)
                except SystemExit as e:  # argparse's usage error
                    out[name] = (int(e.code or 0), "", "")
            return out
        finally:
            await app.stop()

    out = asyncio.run(main())
    code, text, _ = out["summary"]
    assert code == 0 and "groups (60): 60 members, 600 tablets" in text
    assert len([x for x in text.splitlines() if x.startswith("  group ")]) == 3 and "... 57 more groups" in text
    code, text, _ = out["group"]
    assert code == 0 and [x.split()[1] for x in text.splitlines() if x.startswith("    tablet ")] == \
        sorted(f"p{n}" for n in range(600) if 1 + n % 60 == 5)[:4]
    doc = json.loads(out["group-json"][1])
    assert list(doc["groups"]) == ["5"] and len(doc["groups"]["5"]["tablets"]) == 4 and doc["zeros"]
    doc = json.loads(out["find-json"][1])
    assert sorted(t for g in doc["groups"].values() for t in g["tablets"]) == ["p59", "p590", "p591", "p592", "p593",
                                                                             "p594", "p595", "p596", "p597", "p598",
                                                                             "p599"]
    assert len(json.loads(out["whole-json"][1])["groups"]) == 60
    assert out["bad"][0] == 2
