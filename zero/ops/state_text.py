"""`zero admin state` for people: the header and the zeros, then totals and the largest
groups (`--top`), one group with its tablets a page at a time (`--group`, `--offset`,
`--limit`), the tablets whose names contain a text (`--tablet`), or everything (`--all`,
what a small cluster prints by default). At 10,000 groups and 1,000,000 tablets the
default stays a screenful (issue 23 goal 4). Pure: a MembershipState in, text out.
"""

from __future__ import annotations

from dataclasses import dataclass

from zero.ops import state_summary
from zero.pb import zero_pb2

__all__ = ["StateView", "state_text", "ALL_BELOW"]

ALL_BELOW = 50  # a cluster with fewer groups than this is printed whole by default
GROUP_TABLETS = 20  # tablets listed under each group of a listing (the largest)


@dataclass(frozen=True, slots=True)
class StateView:
    top: int = 20
    group: int = 0
    tablet: str = ""
    offset: int = 0
    limit: int = 100
    everything: bool = False


def _member_line(mid: int, m: zero_pb2.Member) -> str:
    flags = [f for f, on in (("leader", m.leader), ("learner", m.learner)) if on]
    flags += [f"{k}={m.labels[k]}" for k in sorted(m.labels)]  # placement labels (zone, rack, host)
    return f"    member {mid:>4}  {m.addr:<28} {'healthy' if m.healthy else 'UNHEALTHY'} {' '.join(flags)}".rstrip()


def _tablet_line(t: zero_pb2.Tablet, *, group: bool = False) -> str:
    ro = " read-only" if t.read_only else ""
    where = f"  group {t.group_id}" if group else ""
    return f"    tablet {t.predicate}  {t.size_bytes:,} bytes{ro}{where}"


def _group_lines(gid: int, g: zero_pb2.Group, size: int, tablets: list[zero_pb2.Tablet], shown_from: int = 0) -> list[str]:
    lines = [f"  group {gid}: {len(g.members)} members, {len(g.tablets):,} tablets, {size:,} bytes"]
    lines += [_member_line(mid, g.members[mid]) for mid in sorted(g.members)]
    lines += [_tablet_line(t) for t in tablets]
    rest = len(g.tablets) - shown_from - len(tablets)
    if shown_from or rest > 0:
        first = shown_from + 1 if tablets else shown_from
        lines.append(f"    tablets {first:,}-{shown_from + len(tablets):,} of {len(g.tablets):,}, largest first"
                     + (f"; more: --group {gid} --offset {shown_from + len(tablets)}" if rest > 0 else ""))
    return lines


def state_text(st: zero_pb2.MembershipState, view: StateView = StateView()) -> str:
    lines = [f"cluster {st.cluster_id or '-'}  version {st.version}  max_uid {st.max_uid}  "
             f"max_txn_ts {st.max_txn_ts}"]
    lines.append(f"zeros ({len(st.zeros)}): health as the leader sees it")
    for zid in sorted(st.zeros):
        z = st.zeros[zid]
        lines.append(f"  {zid:>4}  {z.addr:<28} {'healthy' if z.healthy else 'UNHEALTHY':<9}"
                     f"{' leader' if z.leader else ''}")
    per_group = state_summary.group_totals(st.groups)
    t = state_summary.totals(per_group)
    lines.append(f"groups ({t.groups:,}): {t.members:,} members, {t.tablets:,} tablets, {t.size_bytes:,} bytes")
    if view.group:
        if view.group not in st.groups:
            lines.append(f"  group {view.group} does not exist")
        else:
            g = st.groups[view.group]
            size = sum(x.size_bytes for x in g.tablets.values())
            lines += _group_lines(view.group, g, size, state_summary.tablet_page(g, view.offset, view.limit),
                                  max(0, view.offset))
    elif view.tablet:
        found, count = state_summary.find_tablets(st.groups, view.tablet, view.limit)
        lines.append(f"  {count:,} tablets contain {view.tablet!r}"
                     + (f"; the first {len(found):,} by name" if count > len(found) else ""))
        lines += [_tablet_line(x, group=True) for x in found]
    else:
        whole = view.everything or len(per_group) < ALL_BELOW
        shown = per_group if whole else state_summary.page_of_groups(per_group, view.offset, view.top)
        if not whole:
            lines.append(f"  the {len(shown):,} largest from #{view.offset + 1:,} (--top, --offset; --group G for "
                         "one, --tablet TEXT to find tablets, --all for everything):")
        for s in (sorted(shown, key=lambda s: s.id) if whole else shown):
            g = st.groups[s.id]
            lines += _group_lines(s.id, g, s.size_bytes, state_summary.largest_tablets(g, GROUP_TABLETS))
        if not whole and len(per_group) > view.offset + len(shown):
            lines.append(f"  ... {len(per_group) - view.offset - len(shown):,} more groups")
    if st.removed:
        lines.append("removed: " + ", ".join(f"{'zero' if not m.group_id else 'member'} {m.id}" for m in st.removed))
    return "\n".join(lines)
