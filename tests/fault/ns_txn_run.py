"""The runner of one bank run under partitions, started by the test inside the client
namespace: `ip netns exec <client-ns> python -m fault.ns_txn_run CONFIG.json` (cwd tests/).

Each zero runs in its own namespace (ns_run.NsZero); the data nodes and the workload's
clients run here, in the client namespace, on its bridge address. The nemesis is the
transactional runs' (txn_run: zero and data-node process faults) plus ns_run's
partitions: a zero (often the leader) cut off from the other zeros while clients and
data nodes still reach it, or its link on the bridge down. The run's summary and
violations go to CONFIG's `out`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from procs import ProcCluster

from .history import OK
from .loopback import LoopbackCluster
from .moves_run import MovesRig, rig_flags
from .moves_workload import MovesNemesis
from .netns import Namespaces, assert_inside_namespace
from .ns_run import NsZero, PartitionNemesis
from .txn_run import run_txn_workload


class PartitionTxnNemesis(PartitionNemesis, MovesNemesis):
    """Partitions (ns_run) beside the zero and data-node faults (moves_workload)."""


def main(cfg_path: str) -> int:
    cfg = json.loads(Path(cfg_path).read_text())
    ns = Namespaces.from_dict(cfg["ns"])
    root = Path(cfg["root"])
    zeros = [NsZero(root / "zeros" / f"z{i + 1}", f"z{i + 1}", ns.nodes[i], ns.ip(i), flags=rig_flags())
             for i in range(len(ns.nodes))]
    pc = ProcCluster(root / "zeros", 0, flags=rig_flags())
    pc.zeros.extend(zeros)
    rig = MovesRig(root, chunk_delay="0", cluster=LoopbackCluster(root / "zeros", pc=pc), host=ns.client_ip)
    result: dict[str, Any] = {}
    try:
        assert_inside_namespace([z.addr for z in zeros], ns.prefix, ns.client, cfg["root_netns"])
        rig.start()
        assert_inside_namespace([d.addr for d in rig.datanodes], ns.prefix, ns.client, cfg["root_netns"])
        r = run_txn_workload(rig, workload="bank", name=cfg["name"], seed=cfg["seed"], duration=cfg["duration"],
                             faults=cfg["faults"],
                             nemesis=lambda *a, **kw: PartitionTxnNemesis(a[0], ns, *a[1:], **kw))
        bad = {k: v for k, v in r.violations.items() if v}
        partitions = [o.f for o in r.history.ops() if o.process == "nemesis" and o.type == OK
                      and o.f in ("isolate_leader", "partition_one", "link_down")]
        result = {"summary": {**r.summary(), "partitions": partitions}, "violations": bad}
        if bad:
            hist = r.history.dump(cfg.get("history_dir"))
            result["history"] = str(hist)
            for log in rig.logs():  # the processes' logs beside the history
                shutil.copy(log, hist.with_suffix(f".{log.stem}.log"))
    except BaseException as e:  # noqa: BLE001 - reported to the test
        result = {"error": repr(e), "logs": {p.stem: p.read_text(errors="replace")[-1500:]
                                             for p in rig.logs() if p.exists()}}
    finally:
        rig.close()
        Path(cfg["out"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
