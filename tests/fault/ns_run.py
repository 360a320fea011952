"""The runner of one partition run, started by the test inside the client namespace:
`ip netns exec <client-ns> python -m fault.ns_run CONFIG.json` (cwd tests/).

It starts each zero in its own namespace (`ip netns exec`), checks it is itself inside a
namespace before its first connection, runs the workload under a nemesis that adds
partitions (iptables inside a zero's namespace, or its veth down on the switch) to the
process faults, and writes the run's summary and violations to CONFIG's `out`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from procs import FAST, REPO, ProcCluster, ZeroProc, clean_env

from .history import History
from .loopback import FLAGS, LoopbackCluster
from .nemesis import Nemesis
from .netns import Namespaces, assert_inside_namespace, in_netns
from .runner import run

PARTITIONS = ("isolate_leader", "partition_one", "link_down")


class NsZero(ZeroProc):
    """A `zero run` inside namespace `ns`, listening on its bridge address."""

    def __init__(self, data_dir: Path, name: str, ns: str, ip: str, flags: Sequence[str] = FAST) -> None:
        super().__init__(data_dir, name, flags=flags)
        self.ns, self.ip = ns, ip
        self.grpc_port, self.http_port = 5080, 6080  # each zero has its own namespace
        self.addr = f"{ip}:5080"
        self.http = f"http://{ip}:6080"

    def start(self, *extra: str) -> NsZero:
        assert not self.running, f"{self.name} is already running"
        args = in_netns(self.ns, [sys.executable, "-m", "zero", "run", "--data-dir", str(self.data_dir),
                                  "--grpc-addr", self.addr, "--http-addr", f"{self.ip}:6080", "--my", self.addr,
                                  "--log-format", "json", *self.flags, *extra])
        if self._out is not None:
            self._out.close()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(self.log, "a")
        self._out.write(f"--- start: {' '.join(args)}\n")
        self._out.flush()
        # `ip netns exec` execs the command: the pid is the zero's own.
        self.proc = subprocess.Popen(args, cwd=REPO, env=clean_env(), stdout=self._out, stderr=subprocess.STDOUT)
        return self


class PartitionNemesis(Nemesis):
    def __init__(self, target: LoopbackCluster, ns: Namespaces, *a: Any, **kw: Any) -> None:
        super().__init__(target, *a, **kw)
        self.ns = ns
        self.hold = (0.6, 2.0)  # past two election timeouts (2 x 200 ms): CheckQuorum has acted

    def _index(self, n: Any) -> int:
        return list(self.t.nodes).index(n)

    def _isolate(self, n: Any) -> dict[str, Any]:
        i = self._index(n)
        others = [self.ns.ip(j) for j in range(len(self.ns.nodes)) if j != i]
        self.ns.cut(i, others)  # the clients still reach it: it must not answer stale
        self._hold()
        self.ns.heal()
        return {"node": n.name}

    def _isolate_leader(self) -> dict[str, Any]:
        n = self.t.leader()
        if n is None:
            raise RuntimeError("no leader to isolate")
        return self._isolate(n)

    def _partition_one(self) -> dict[str, Any]:
        return self._isolate(self.rng.choice(list(self.t.nodes)))

    def _link_down(self) -> dict[str, Any]:
        i = self.rng.randrange(len(self.ns.nodes))
        self.ns.link(i, False)
        self._hold()
        self.ns.link(i, True)
        return {"node": self.t.nodes[i].name}

    def heal(self) -> None:
        self.ns.heal()
        super().heal()


def main(cfg_path: str) -> int:
    cfg = json.loads(Path(cfg_path).read_text())
    ns = Namespaces.from_dict(cfg["ns"])
    root = Path(cfg["root"])
    zeros = [NsZero(root / f"z{i + 1}", f"z{i + 1}", ns.nodes[i], ns.ip(i), flags=FLAGS) for i in range(len(ns.nodes))]
    assert_inside_namespace([z.addr for z in zeros], ns.prefix, ns.client, cfg["root_netns"])
    pc = ProcCluster(root, 0, flags=FLAGS)
    pc.zeros.extend(zeros)
    c = LoopbackCluster(root, pc=pc)
    result: dict[str, Any] = {}
    try:
        c.start()
        faults = cfg["faults"]
        r = run(c, name=cfg["name"], seed=cfg["seed"], duration=cfg["duration"], faults=faults,
                nemesis=lambda t, h, s, d: PartitionNemesis(t, ns, h, s, duration=d, faults=faults))
        bad = {k: v for k, v in r.violations.items() if v}
        result = {"summary": r.summary(), "violations": bad}
        if bad:
            hist = r.history.dump(cfg.get("history_dir"))
            result["history"] = str(hist)
            for z in zeros:  # the zeros' logs beside the history
                shutil.copy(z.log, hist.with_suffix(f".{z.name}.log"))
    except BaseException as e:  # noqa: BLE001 - reported to the test
        result = {"error": repr(e), "logs": {z.name: z.log_tail(1500) for z in zeros}}
    finally:
        c.cleanup()
        Path(cfg["out"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
